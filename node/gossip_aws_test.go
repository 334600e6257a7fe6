package node

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/cluster/ec2test"
	"github.com/quorumca/quorumca/internal/testwait"
)

// Three nodes with the same config find each other through EC2 tags
// (retry_join = ["provider=aws ..."], against a fake EC2 endpoint), the way
// instances of an auto-scaling group do: each gossips on its own address
// (127.0.0.2-4 here) at the same port, and none is told another's address.
func TestGossipAutoJoinAWS(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := freeGossipPort(t, hosts)
	tags := map[string]string{"quorumca-cluster": "test"}
	ec2 := ec2test.Start(t,
		ec2test.Instance{ID: "i-1", State: "running", PrivateIP: hosts[0], Tags: tags},
		ec2test.Instance{ID: "i-2", State: "running", PrivateIP: hosts[1], Tags: tags},
		ec2test.Instance{ID: "i-3", State: "running", PrivateIP: hosts[2], Tags: tags},
		ec2test.Instance{ID: "i-4", State: "stopped", PrivateIP: "127.0.0.5", Tags: tags},
	)
	join := []string{fmt.Sprintf("provider=aws tag_key=quorumca-cluster tag_value=test region=%s port=%d endpoint=%s",
		ec2test.Region, port, ec2.URL)}

	c := emptyCluster(t, cluster.FastTiming())
	key := gossipKey(t)
	for i, h := range hosts {
		c.nodes = append(c.nodes, &testNode{cfg: c.gossipConfig(i, net.JoinHostPort(h, fmt.Sprint(port)), join, key)})
	}
	c.startAll()
	testwait.For(t, 30*time.Second, "one cluster of 3 voters", func() bool {
		for _, tn := range c.nodes {
			if v, _, _ := suffrages(tn); v != 3 {
				return false
			}
		}
		return true
	})
	c.WaitConverged()
	c.admin = readAdminToken(t, c.dir)
	c.enrollHolder(c.Followers()[0], "auto-joined.example")
	if len(ec2.Requests()) == 0 {
		t.Fatal("no node asked EC2")
	}
}

// freeGossipPort finds a port free for TCP and UDP on every host.
func freeGossipPort(t *testing.T, hosts []string) int {
	t.Helper()
	for range 50 {
		port := 0
		var closers []func() error
		ok := true
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l.Close)
			port = l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", l.Addr().String())
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u.Close)
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free for TCP and UDP on %v", hosts)
	return 0
}
