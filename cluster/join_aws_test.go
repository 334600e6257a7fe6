package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/quorumca/quorumca/cluster/ec2test"
)

// A fleet with what auto-join must pass over: stopped and pending
// instances, other tags, no tags, an instance without a private address and
// instances without a public one.
var fleet = []ec2test.Instance{
	{ID: "i-1", State: "running", PrivateIP: "10.0.1.10", PublicIP: "203.0.113.10", Tags: map[string]string{"Role": "quorumca", "Name": "ca-1"}},
	{ID: "i-2", State: "running", PrivateIP: "10.0.2.10", Tags: map[string]string{"Role": "quorumca"}},
	{ID: "i-3", State: "stopped", PrivateIP: "10.0.3.10", PublicIP: "203.0.113.13", Tags: map[string]string{"Role": "quorumca"}},
	{ID: "i-4", State: "running", PrivateIP: "10.0.4.10", PublicIP: "203.0.113.14", Tags: map[string]string{"Role": "web"}},
	{ID: "i-5", State: "running", PublicIP: "203.0.113.15", Tags: map[string]string{"Role": "quorumca"}},
	{ID: "i-6", State: "running", PrivateIP: "10.0.6.10", PublicIP: "203.0.113.16", Tags: map[string]string{"Role": "quorumca"}},
	{ID: "i-7", State: "running", PrivateIP: "10.0.7.10"},
	{ID: "i-8", State: "pending", PrivateIP: "10.0.8.10", Tags: map[string]string{"Role": "quorumca"}},
	{ID: "i-9", State: "running", PrivateIP: "10.0.9.10", Tags: map[string]string{"Role": "quorumca"}},
}

func TestAWSJoinProvider(t *testing.T) {
	// Five running instances are tagged Role=quorumca, two to a page: three
	// requests, following NextToken.
	pages := []string{"", "page-2", "page-4"}
	for _, tc := range []struct {
		name   string
		args   string
		want   []string
		tokens []string // NextToken of each request
		region string   // in each request's credential scope
	}{
		{name: "private", args: "tag_key=Role tag_value=quorumca",
			want:   []string{"10.0.1.10:8301", "10.0.2.10:8301", "10.0.6.10:8301", "10.0.9.10:8301"},
			tokens: pages, region: ec2test.Region},
		{name: "own port and region", args: "tag_key=Role tag_value=quorumca addr_type=private_v4 port=7946 region=us-east-2",
			want:   []string{"10.0.1.10:7946", "10.0.2.10:7946", "10.0.6.10:7946", "10.0.9.10:7946"},
			tokens: pages, region: "us-east-2"},
		{name: "public", args: "tag_key=Role tag_value=quorumca addr_type=public_v4",
			want:   []string{"203.0.113.10:8301", "203.0.113.15:8301", "203.0.113.16:8301"},
			tokens: pages, region: ec2test.Region},
		{name: "no match", args: "tag_key=Role tag_value=db", tokens: []string{""}, region: ec2test.Region},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ec2 := ec2test.Start(t, fleet...)
			got, err := resolveJoin(context.Background(), []string{"provider=aws endpoint=" + ec2.URL + " " + tc.args})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("addresses: got %v, want %v", got, tc.want)
			}
			reqs := ec2.Requests()
			if len(reqs) != len(tc.tokens) {
				t.Fatalf("%d requests, want %d: %+v", len(reqs), len(tc.tokens), reqs)
			}
			value := strings.TrimPrefix(strings.Fields(tc.args)[1], "tag_value=")
			wantFilters := []ec2test.Filter{{Name: "tag:Role", Values: []string{value}}, {Name: "instance-state-name", Values: []string{"running"}}}
			for i, r := range reqs {
				if r.Action != "DescribeInstances" || r.NextToken != tc.tokens[i] {
					t.Errorf("request %d: action %q, NextToken %q; want DescribeInstances, %q", i, r.Action, r.NextToken, tc.tokens[i])
				}
				if !slices.EqualFunc(r.Filters, wantFilters, filterEqual) {
					t.Errorf("request %d filters: got %+v, want %+v", i, r.Filters, wantFilters)
				}
				if !strings.HasPrefix(r.Authorization, "AWS4-HMAC-SHA256 ") ||
					!strings.Contains(r.Authorization, "Credential="+ec2test.AccessKey+"/") ||
					!strings.Contains(r.Authorization, "/"+tc.region+"/ec2/aws4_request") {
					t.Errorf("request %d not signed with the static key in %s: %q", i, tc.region, r.Authorization)
				}
			}
		})
	}
}

// Entries without a provider pass through; provider entries are expanded in
// place.
func TestResolveJoinMixesProviders(t *testing.T) {
	ec2 := ec2test.Start(t, fleet...)
	got, err := resolveJoin(context.Background(), []string{
		"ca-0.example:8301",
		"provider=aws tag_key=Name tag_value=ca-1 port=9301 endpoint=" + ec2.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ca-0.example:8301", "10.0.1.10:9301"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := resolveJoin(context.Background(), []string{"provider=gce tag_value=x"}); err == nil || !strings.Contains(err.Error(), "unknown provider") {
		t.Fatalf("unknown provider: %v", err)
	}
}

// Malformed entries fail before any request; EC2's refusals are reported.
func TestAWSJoinProviderErrors(t *testing.T) {
	ec2 := ec2test.Start(t, fleet...)
	for _, args := range []string{
		"tag_value=quorumca",
		"tag_key=Role",
		"tag_key=Role tag_value=quorumca addr_type=private_v6",
		"tag_key=Role tag_value=quorumca port=0",
		"tag_key=Role tag_value=quorumca port=http",
		"tag_key=Role tag_value=quorumca tag=Role",
	} {
		_, err := resolveJoin(context.Background(), []string{"provider=aws endpoint=" + ec2.URL + " " + args})
		if !errors.Is(err, ErrJoinArgs) {
			t.Errorf("%q: got %v, want ErrJoinArgs", args, err)
		}
	}
	if n := len(ec2.Requests()); n != 0 {
		t.Fatalf("%d requests for malformed entries", n)
	}

	ec2.Fail("UnauthorizedOperation")
	_, err := resolveJoin(context.Background(), []string{"provider=aws tag_key=Role tag_value=quorumca endpoint=" + ec2.URL})
	if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Fatalf("refused by EC2: got %v", err)
	}
}

func filterEqual(a, b ec2test.Filter) bool {
	return a.Name == b.Name && slices.Equal(a.Values, b.Values)
}
