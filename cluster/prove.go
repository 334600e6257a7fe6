package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"
)

// The gossip key only encrypts gossip: anyone who holds it can join the
// pool and announce any id, Raft address and API address. So a gossip
// member counts as a server (towards bootstrap_expect, or for the leader
// to add it) only once it has proven the id it announces: its API address
// answered an internal RPC over mutual TLS, and its Raft address a TLS
// handshake, with a node certificate of the cluster CA for that id, and it
// reads the log format it announces. A member whose announcement changes,
// or that comes back from the dead, proves itself again; until then it is
// what it proved (gossip.go, member.next).

const (
	proveTimeout  = time.Second // one proof's RPC
	proveRetry    = time.Second // between proofs of a member that failed one
	proveParallel = 8           // proofs in flight at once
	proveTick     = 250 * time.Millisecond
	// proveAgain: a live member proves its announcement again this often.
	// Whoever holds its gossip name (a key holder may take a live member's
	// name after a forged leave, with the member's own announcement, which
	// the member then proves) would otherwise keep it alive in gossip, and
	// in the configuration, after it died.
	proveAgain     = 30 * time.Second
	proveAgainFast = 2 * time.Second // GossipConfig.Fast
)

func (g *gossip) proveAgain() time.Duration {
	if g.cfg.Fast {
		return proveAgainFast
	}
	return proveAgain
}

// again reports whether m, alive and proven, is due to prove itself again.
func (g *gossip) again(m *member, now time.Time) bool {
	return m.alive && m.proven && m.next == nil && m.ID != g.c.cfg.NodeID && now.Sub(m.provenAt) >= g.proveAgain()
}

// proveLoop proves the members gossip finds.
func (c *Cluster) proveLoop() {
	defer c.wg.Done()
	g := c.gossip
	tick := time.NewTicker(proveTick)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-g.prove:
		case <-tick.C:
		}
		g.proveMembers(c.ctx)
	}
}

// proveMembers starts proofs of the members that have an announcement to
// prove (and were not asked within proveRetry), while fewer than
// proveParallel are in flight: those that failed fewest first, then the
// least recently asked. It waits for none of them, so members that hold
// a proof until it times out, however many, do not hold up a member just
// found, nor does one whose announcements keep changing (its failures
// and last try stay with its name).
func (g *gossip) proveMembers(ctx context.Context) {
	if _, err := g.c.tls.current(); err != nil {
		return // no certificate of our own to ask with yet
	}
	now := time.Now()
	g.mu.Lock()
	var due []*member
	for _, m := range g.members {
		if _, ok := m.toProve(); (ok || g.again(m, now)) && !m.busy && now.Sub(m.tried) >= proveRetry {
			due = append(due, m)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if due[i].fails != due[j].fails {
			return due[i].fails < due[j].fails
		}
		return due[i].tried.Before(due[j].tried)
	})
	var todo []meta
	for _, m := range due {
		if g.proving >= proveParallel {
			break
		}
		a, ok := m.toProve()
		if !ok {
			a = m.meta // again
		}
		m.tried, m.busy = now, true
		g.proving++
		todo = append(todo, a)
		if g.trace != nil {
			g.trace("start", a.ID)
		}
	}
	g.mu.Unlock()
	for _, a := range todo {
		g.c.wg.Add(1)
		go func() {
			defer g.c.wg.Done()
			g.proved(a, g.c.proveMember(ctx, a))
		}()
	}
}

// proveMember asks m's API address, over mutual TLS, which log format it
// reads: the answer counts only from a node certificate for m's id
// (postAs). A release before the question answers 404 after the handshake,
// which proves the certificate as well, and reads format 0. The member
// must read the log format it announces (the leader adds it by that, at
// the format gate), and its Raft address must show the same certificate:
// the API alone proves nothing of the Raft address announced with it, and
// the leader would move the server there.
func (c *Cluster) proveMember(ctx context.Context, m meta) error {
	if _, _, err := net.SplitHostPort(m.API); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(m.Raft); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, proveTimeout)
	defer cancel()
	var out formatReply
	err := c.postAs(ctx, m.ID, "https://"+m.API+pathFormat, []byte("{}"), &out)
	if errors.Is(err, errUnknownPath) {
		out.Format, err = 0, nil
	}
	if err != nil {
		return err
	}
	if m.LogFormat > out.Format {
		return fmt.Errorf("%s announces log format %d, and its API says it reads %d", m.ID, m.LogFormat, out.Format)
	}
	return c.proveRaft(ctx, m)
}

// proveRaft completes a handshake with m's Raft address: it must show a
// node certificate of this cluster for m's id.
func (c *Cluster) proveRaft(ctx context.Context, m meta) error {
	d := tls.Dialer{Config: c.tls.clientConfig()}
	conn, err := d.DialContext(ctx, "tcp", m.Raft)
	if err != nil {
		return fmt.Errorf("raft address %s: %w", m.Raft, err)
	}
	defer conn.Close()
	if cs := conn.(*tls.Conn).ConnectionState(); len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != m.ID {
		return fmt.Errorf("raft address %s answered with another node's certificate, not %s's", m.Raft, m.ID)
	}
	return nil
}

// proved records the outcome of a proof of announcement a, if the member
// still has it to prove.
func (g *gossip) proved(a meta, err error) {
	defer func() { // a proof slot is free
		select {
		case g.prove <- struct{}{}:
		default:
		}
	}()
	g.mu.Lock()
	g.proving--
	cur, ok := g.members[a.ID]
	if !ok {
		g.mu.Unlock()
		return
	}
	cur.busy = false
	want, asked := cur.toProve()
	again := !asked && cur.alive && cur.proven && cur.next == nil && cur.meta == a
	if !again && (!asked || want != a) {
		g.mu.Unlock()
		return
	}
	if err != nil {
		if again {
			// It no longer proves what it proved: dead from now on, until
			// it proves it again.
			cur.next, cur.alive, cur.since = &a, false, time.Now()
		}
		first := !cur.warned
		cur.warned = true
		cur.fails++
		g.mu.Unlock()
		if first {
			g.c.log.Warn("gossip member has not shown a node certificate for its id; not counted as a server", "id", a.ID, "api", a.API, "raft", a.Raft, "err", err)
		}
		return
	}
	if cur.next != nil {
		// A later announcement proven: the member is alive at it.
		cur.meta, cur.next, cur.alive, cur.since = a, nil, true, time.Time{}
	}
	cur.proven, cur.warned, cur.fails, cur.provenAt = true, false, 0, time.Now()
	g.mu.Unlock()
	g.c.log.Debug("gossip member proved its id", "id", a.ID, "api", a.API)
	select {
	case g.changed <- struct{}{}:
	default:
	}
}
