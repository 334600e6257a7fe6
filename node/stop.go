package node

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// crash stops the node the way a killed process stops: no leadership
// handover, no gossip leave. For tests of failure handling.
func (n *Node) crash() {
	n.cancel()
	n.cluster.Crash()
	for _, l := range []net.Listener{n.listener, n.publicListener, n.adminListener} {
		if l != nil {
			l.Close()
		}
	}
	for _, s := range []*http.Server{n.public, n.http, n.adminHTTP} {
		if s != nil {
			s.Close()
		}
	}
	n.wg.Wait()
	n.ocsp.Close()
	n.fsm.Close()
	n.signers.Close()
}

// Close shuts the node down gracefully: a leader hands leadership over
// first, then the node stops accepting requests, finishes those in flight
// (which may still forward to the new leader), and leaves Raft.
func (n *Node) Close() error {
	if n.cluster != nil && n.cluster.IsLeader() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.cluster.TransferLeadership(ctx, ""); err != nil {
			n.log.Warn("leadership transfer before shutdown failed", "err", err)
		}
		cancel()
	}
	return errors.Join(n.stopServing(), n.leave())
}

// StopAll stops, for good, nodes of one cluster that run in one process
// (dev mode), without the noise of stopping them one by one, where the
// nodes still running log errors about those gone (a leader replicating
// to them, a follower asking them for votes or cut off mid-message). Every
// node first stops serving while Raft still runs everywhere; then the
// leader leaves Raft, without a hand-over (no one stays to take it), and
// the others right after, long before they could miss it and call an
// election.
func StopAll(nodes []*Node) error {
	nodes = slices.Clone(nodes)
	slices.SortStableFunc(nodes, func(a, b *Node) int {
		return cmp.Compare(b2i(b.cluster.IsLeader()), b2i(a.cluster.IsLeader()))
	})
	// Together: each server may wait a second for its HTTP/2 clients,
	// the other nodes, to go.
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.stopServing() })
	}
	wg.Wait()
	for _, n := range nodes {
		errs = append(errs, n.leave())
	}
	return errors.Join(errs...)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stopServing stops the node's work and its listeners, letting requests
// in flight finish.
func (n *Node) stopServing() error {
	n.cancel()
	if n.acme != nil {
		n.acme.Close()
	}
	var errs []error
	for _, s := range []*http.Server{n.public, n.http, n.adminHTTP} {
		if s != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, s.Shutdown(ctx))
			cancel()
		}
	}
	for _, l := range []net.Listener{n.listener, n.publicListener, n.adminListener} {
		if l != nil {
			l.Close() // a listener whose server never started
		}
	}
	return errors.Join(errs...)
}

// leave leaves Raft and closes the node's files.
func (n *Node) leave() error {
	var errs []error
	if n.cluster != nil {
		errs = append(errs, n.cluster.Shutdown())
	}
	n.wg.Wait()
	n.reportSuppressed()
	if n.audit != nil {
		errs = append(errs, n.audit.close())
	}
	if n.profiler != nil {
		errs = append(errs, n.profiler.Stop())
	}
	errs = append(errs, n.ocsp.Close())
	if n.fsm != nil {
		errs = append(errs, n.fsm.Close())
	}
	errs = append(errs, n.signers.Close())
	return errors.Join(errs...)
}
