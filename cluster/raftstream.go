package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is Raft's transport layer over mutual TLS.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	tls       *nodeTLS

	once, closeOnce sync.Once
	conns           chan net.Conn
	done            chan struct{}
}

func newTLSStream(ln net.Listener, advertise net.Addr, t *nodeTLS) *tlsStream {
	return &tlsStream{Listener: ln, advertise: advertise, tls: t, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), s.tls.clientConfig())
}

// Accept hands Raft only connections whose TLS handshake, with a node
// certificate, has completed: a peer without one is turned away before
// Raft reads a byte. Handshakes run side by side, so a slow or silent peer
// holds up no one.
func (s *tlsStream) Accept() (net.Conn, error) {
	s.once.Do(func() { go s.acceptLoop() })
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) acceptLoop() {
	for {
		conn, err := s.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait a little, as
			// net/http does.
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		go s.handshake(conn)
	}
}

func (s *tlsStream) handshake(conn net.Conn) {
	tc := tls.Server(conn, s.tls.serverConfig())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	leaf := tc.ConnectionState().PeerCertificates[0]
	if leaf.Subject.CommonName == s.tls.id {
		// This node dialled itself: Raft addressed another server at the
		// address this node now holds (that server is away; a replacement
		// was given its private address). Its own AppendEntries would
		// make it step down as leader, its own RequestVote would count as
		// the other server's vote.
		conn.Close()
		return
	}
	pc := &peerConn{Conn: tc, leaf: leaf, tls: s.tls}
	pc.checked.Store(time.Now().UnixNano())
	select {
	case s.conns <- pc:
	case <-s.done:
		tc.Close()
	}
}

// peerConn is a Raft connection from another node. The handshake checked
// its node certificate; a connection lives on, so the certificate is
// checked again, at most once a second, as data arrives: a certificate that
// expires, or whose node an operator removes, stops being heard within a
// second instead of when the connection happens to break.
type peerConn struct {
	net.Conn
	leaf    *x509.Certificate
	tls     *nodeTLS
	checked atomic.Int64 // unix nanoseconds of the last check
}

const peerRecheck = time.Second

func (c *peerConn) Read(b []byte) (int, error) {
	now := time.Now()
	if last := c.checked.Load(); now.UnixNano()-last > int64(peerRecheck) && c.checked.CompareAndSwap(last, now.UnixNano()) {
		err := c.tls.notRemoved(c.leaf)
		if err == nil && now.After(c.leaf.NotAfter) {
			err = errors.New("cluster: the peer's node certificate expired")
		}
		if err != nil {
			c.Conn.Close()
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

func (s *tlsStream) Close() error {
	err := s.Listener.Close()
	s.closeOnce.Do(func() { close(s.done) })
	return err
}

// noPipeline turns off Raft's pipelined replication: hashicorp/raft can
// deadlock a replication goroutine when a follower rejects an entry while
// a pipelined send is in flight (the follower then gets heartbeats but no
// more entries, and Shutdown hangs). Plain AppendEntries costs a round
// trip per batch, which our batched applies absorb.
type noPipeline struct{ *raft.NetworkTransport }

func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
