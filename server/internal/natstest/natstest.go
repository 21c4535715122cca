// Package natstest runs NATS servers with JetStream inside a test process: one server, or a
// cluster whose nodes can be stopped and started again on the same ports and storage. Only
// tests import it.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Node is one NATS server of a Cluster (or a lone one).
type Node struct {
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// URL is the node's client address.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// Name is the node's server name.
func (n *Node) Name() string { return n.opts.ServerName }

// Running reports whether the node is started.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil
}

// Stop shuts the node down (its JetStream storage stays for Start).
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Start starts the node on its ports and storage.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	o := n.opts.Clone()
	s, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("nats server %s: %w", o.ServerName, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server %s not ready within 20s", o.ServerName)
	}
	n.srv = s
	return nil
}

// Server is the running server (nil when stopped).
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Cluster is a set of nodes routed to each other.
type Cluster struct {
	Nodes []*Node
}

// URLs is every node's client address, comma-separated: what a client is given.
func (c *Cluster) URLs() string {
	var us []string
	for _, n := range c.Nodes {
		us = append(us, n.URL())
	}
	return strings.Join(us, ",")
}

// StreamLeader is the node leading stream's replica group, nil when none does now.
func (c *Cluster) StreamLeader(stream string) *Node {
	for _, n := range c.Nodes {
		if s := n.Server(); s != nil && s.JetStreamIsStreamLeader("$G", stream) {
			return n
		}
	}
	return nil
}

// freePorts returns k ports free on the loopback now.
func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Run starts a lone JetStream server on a temporary directory, stopped when the test ends.
func Run(t testing.TB) *Node {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{opts: &server.Options{ServerName: "solo", Host: "127.0.0.1", Port: ports[0], NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30}}
	n.Start(t)
	t.Cleanup(n.Stop)
	return n
}

// RunCluster starts size JetStream servers routed as one cluster, each on its own temporary
// directory, stopped when the test ends.
func RunCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	c, err := StartCluster(t.TempDir(), size)
	if c != nil {
		t.Cleanup(c.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// StartCluster starts size JetStream servers routed as one cluster, storing under dir; Stop
// stops them. Tests that share one cluster (it takes the servers seconds to elect their
// meta leader) start it this way. A cluster is returned even with an error, to be stopped.
func StartCluster(dir string, size int) (*Cluster, error) {
	ports, err := freePorts(2 * size)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[size+i]))
	}
	c := &Cluster{}
	for i := range size {
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: ports[i], NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprint("n", i+1)), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
			Cluster: server.ClusterOpts{Name: "llm4rec-test", Host: "127.0.0.1", Port: ports[size+i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
		c.Nodes = append(c.Nodes, &Node{opts: o})
	}
	var wg sync.WaitGroup
	errs := make([]error, size)
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.start()
		}()
	}
	wg.Wait()
	return c, errors.Join(errs...)
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
