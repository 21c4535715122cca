package natstest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ChildEnv, set, makes a test binary's TestMain run one NATS server (RunChild) instead of
// its tests: the nodes of a ProcessCluster, which a test can kill with SIGKILL.
const ChildEnv = "LLM4REC_NATSTEST_NODE"

// RunChild runs the NATS server the environment describes, prints "READY" once it takes
// connections and serves until it is killed.
func RunChild() int {
	port, _ := strconv.Atoi(os.Getenv("LLM4REC_NATSTEST_PORT"))
	cport, _ := strconv.Atoi(os.Getenv("LLM4REC_NATSTEST_CLUSTER_PORT"))
	o := &server.Options{ServerName: os.Getenv(ChildEnv), Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: os.Getenv("LLM4REC_NATSTEST_DIR"), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
		Cluster: server.ClusterOpts{Name: "llm4rec-test", Host: "127.0.0.1", Port: cport},
		Routes:  server.RoutesFromStr(os.Getenv("LLM4REC_NATSTEST_ROUTES"))}
	s, err := server.NewServer(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats node:", err)
		return 1
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats node: not ready within 20s")
		return 1
	}
	fmt.Println("READY")
	s.WaitForShutdown()
	return 0
}

// ProcNode is a NATS server in a child process of the test binary.
type ProcNode struct {
	name string
	env  []string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

// Name is the node's server name; URL its client address.
func (p *ProcNode) Name() string { return p.name }
func (p *ProcNode) URL() string  { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

// Start starts the node's process (on its ports and storage) and waits until it is ready.
func (p *ProcNode) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), p.env...)
	p.stderr = &bytes.Buffer{}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("nats node %s exited: %s", p.name, p.stderr)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("nats node %s not ready within 30s: %s", p.name, p.stderr)
	}
	p.cmd = cmd
}

// Kill sends SIGKILL and waits for the process to end: nothing of the server's shutdown runs.
func (p *ProcNode) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		p.cmd = nil
	}
}

// ProcessCluster is size NATS servers, each in a child process of the test binary (whose
// TestMain must call RunChild when ChildEnv is set), routed as one cluster, each storing in a
// temporary directory; killed when the test ends.
func ProcessCluster(t testing.TB, size int) []*ProcNode {
	t.Helper()
	ports, err := freePorts(2 * size)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[size+i]))
	}
	dir := t.TempDir()
	var nodes []*ProcNode
	for i := range size {
		name := fmt.Sprint("p", i+1)
		nodes = append(nodes, &ProcNode{name: name, port: ports[i], env: []string{ChildEnv + "=" + name,
			fmt.Sprint("LLM4REC_NATSTEST_PORT=", ports[i]), fmt.Sprint("LLM4REC_NATSTEST_CLUSTER_PORT=", ports[size+i]),
			"LLM4REC_NATSTEST_ROUTES=" + strings.Join(routes, ","), "LLM4REC_NATSTEST_DIR=" + filepath.Join(dir, name)}})
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Kill()
		}
	})
	for _, n := range nodes {
		n.Start(t)
	}
	return nodes
}
