package explain

// Templates are the sentences of every explanation, in one place. Each is a text/template
// executed with the fields named in its comment; change the wording here.
var Templates = map[string]string{
	// .Categories: the user's most frequent categories that the item has
	"preference": `Because you often pick {{join .Categories " and "}} titles.`,
	// .Item, .Other: titles; .Count: users who had both
	"similarity_cooccurrence": `People who liked {{.Other}} also liked {{.Item}}.`,
	// .Other: the history item closest in content
	"similarity_embedding": `Similar to {{.Other}}, which you enjoyed.`,
	// .Query: the request's text
	"context_query": `Matches your search "{{.Query}}".`,
	"context_image": `Looks like the image you sent.`,
	"context_audio": `Matches what you asked for by voice.`,
	// .Rank: position among trending items
	"context_trending": `Trending now (#{{.Rank}} this week).`,
}
