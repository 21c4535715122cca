package explain

// Templates are the sentences of every explanation, in one place. Each is a text/template
// executed with the fields named in its comment; change the wording here.
var Templates = map[string]string{
	// .Categories: the item's categories most shared with the history; .Count of .Of history
	// items have the first
	"preference": `{{.Count}} of the {{.Of}} titles in your history are {{join .Categories " or "}}, like this one.`,
	// .Item, .Other: titles; .Count: users who had both
	"similarity_cooccurrence": `People who liked {{.Other}} also liked {{.Item}} ({{count .Count}} of them).`,
	// .Other: a history item close in content that moved this one up
	"similarity_embedding": `Similar to {{.Other}}, which you enjoyed.`,
	// .Other: a history item that moved this one up without a visible likeness
	"similarity_history": `Chosen because {{.Other}} is in your history.`,
	// .Query: the request's text
	"context_query": `Matches your search "{{.Query}}".`,
	"context_image": `Looks like the image you sent.`,
	"context_audio": `Matches what you asked for by voice.`,
	// .Rank: position among trending items
	"context_trending": `Trending now (#{{.Rank}} among recent interactions).`,
	// no single piece of evidence stands out
	"general": `A match for your history as a whole; no single title stands out.`,
}
