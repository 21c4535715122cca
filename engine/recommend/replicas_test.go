package recommend

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// Text encoder replicas answer as one session does: concurrent queries (spread over three
// replicas) get the embeddings a one-replica engine gives, and the golden lists hold.
func TestTextReplicasAnswerAsOne(t *testing.T) {
	one := testEngine(t) // the shared runtime, and the default replicas
	e, err := Open(testBundle(t), rt, Config{TextReplicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	single, err := Open(testBundle(t), rt, Config{TextReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if e.TextReplicas() != 3 || single.TextReplicas() != 1 || one.TextReplicas() < 1 {
		t.Fatalf("replicas %d, %d, default %d", e.TextReplicas(), single.TextReplicas(), one.TextReplicas())
	}
	texts := make([]string, 48)
	want := make([][]float32, len(texts))
	for i := range texts {
		texts[i] = fmt.Sprintf("a film about %d horses crossing a river, number %d", i%7, i)
		if want[i], err = single.EmbedQuery(context.Background(), texts[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(texts))
	for i := range texts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got, err := e.EmbedQuery(context.Background(), texts[i])
			if err != nil {
				errs <- err
				return
			}
			// padded among other queries of other lengths in a batch, or alone: within float
			// rounding of the single session's answer
			for d := range got {
				if diff := got[d] - want[i][d]; diff > 1e-5 || diff < -1e-5 {
					errs <- fmt.Errorf("query %d dim %d: %v, one replica %v", i, d, got[d], want[i][d])
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkRecommendations(t, e)
}
