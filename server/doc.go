// Package server is the engine's HTTP API on fasthttp: recommendations, durable feedback with
// real-time learning, item and user lookups, items added to the live catalog, health,
// Prometheus metrics and model hot reload, behind API keys and hard limits.
//
// # Live state
//
// Everything feedback changes lives in one place, the server's live.State, keyed by user and
// item id rather than by catalog row: users' histories, and the item statistics (counts and
// the propensities derived from them, trending, co-occurrence) that every engine reads
// through a popularity view of its own catalog. The state outlives the engines: a reload
// binds the next engine to it, so the new model sees every event the old one saw, whatever
// its catalog order, and nothing is rebuilt.
//
// The feedback log is the state's only source. Events reach it by one path,
// live.State.CatchUp, which applies the log after the last sequence number applied, in order,
// once each: at start-up (the whole log), after each feedback request's events are durable
// and before it is answered (so the next request sees them), after a reload's swap, and in the
// follower loop every second (so an event whose request could not apply it is applied).
//
// The follower loop also drives the online learner, the one piece of learned state that
// belongs to a model: each loaded engine keeps its own learner and the sequence number it has
// learned up to, restored from the snapshot saved under the bundle's identity (none: it starts
// at 0 and learns the whole log). A snapshot that cannot be read or decoded is logged,
// counted in llm4rec_online_snapshot_errors_total and named in the readiness answer, and the
// learner starts fresh. Snapshots are saved every SnapshotEvery events and at shutdown.
//
// # Added items
//
// POST /admin/items adds items to the live catalog (additions.go): embedded by the serving
// bundle's encoders, stored beside the feedback log (its snapshot store, key
// catalog/added-items) and then added to the engine, which ranks them at once
// (engine/recommend/added.go). Every bundle load, at start-up and on reload, re-adds the
// stored items; additions and reloads hold the same lock.
//
// # Replicas
//
// With Config.Feedback naming NATS servers, the log is a JetStream stream that several
// replicas share (feedback.JetStream, docs/DEPLOY.md). The same CatchUp applies it, in the
// stream's order, on every replica, so they converge; cluster.go adds what sharing needs: an
// applier that applies other replicas' events as they arrive, a lease so that one replica
// learns and saves snapshots while the others load them, and the announcement of a reload
// to every replica.
//
// # Lifecycle
//
// New opens the feedback log in DataDir, catches live state up with it, loads and warms the
// bundle and starts the follower; the server is ready once New returns. Serve answers
// requests; Reload swaps models with requests in flight finishing on the old one; Shutdown
// drains requests, stops the follower, saves the learner's snapshot and closes the log.
package server
