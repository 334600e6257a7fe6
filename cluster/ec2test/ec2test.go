// Package ec2test serves the part of the EC2 API that cloud auto-join uses
// (DescribeInstances over the EC2 query protocol: a form-encoded POST, an
// XML answer, NextToken pages) on 127.0.0.1, for tests. It applies the
// tag and instance-state filters it receives, as EC2 does, and records
// every request so tests can check what a client asked for.
package ec2test

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Region and static credentials Start puts in the environment.
const (
	Region    = "eu-west-1"
	AccessKey = "AKIDEC2TEST"
	SecretKey = "ec2test-secret"
)

// Instance is an EC2 instance as the fake knows it.
type Instance struct {
	ID        string
	State     string // running, stopped, pending, ...
	PrivateIP string // "" for none
	PublicIP  string // "" for none
	Tags      map[string]string
}

// Filter is one Filter.N parameter of a request.
type Filter struct {
	Name   string
	Values []string
}

// Request is what a client sent.
type Request struct {
	Action        string
	Filters       []Filter
	NextToken     string
	Authorization string // the SigV4 header
}

// Server is a running fake EC2 endpoint.
type Server struct {
	URL string
	// PageSize is the most instances a page holds; more make a NextToken.
	PageSize int

	srv       *httptest.Server
	mu        sync.Mutex
	instances []Instance
	requests  []Request
	fail      string // error code to answer with, if set
}

// Start serves a fake EC2 until the test ends. It sets the AWS environment
// the SDK reads (static credentials, the region, no shared files, no
// instance metadata), so no request leaves 127.0.0.1.
func Start(t testing.TB, instances ...Instance) *Server {
	t.Helper()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": AccessKey, "AWS_SECRET_ACCESS_KEY": SecretKey, "AWS_SESSION_TOKEN": "", "AWS_REGION": Region,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": "",
	} {
		t.Setenv(k, v)
	}
	s := &Server{PageSize: 2, instances: instances}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Fail makes every later request fail with an EC2 error code (HTTP 403,
// which the SDK does not retry); "" serves again.
func (s *Server) Fail(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = code
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		http.Error(w, "want a form-encoded POST", http.StatusBadRequest)
		return
	}
	req := Request{Action: r.PostForm.Get("Action"), NextToken: r.PostForm.Get("NextToken"),
		Filters: parseFilters(r.PostForm), Authorization: r.Header.Get("Authorization")}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	fail := s.fail
	var match []Instance
	for _, in := range s.instances {
		if matches(in, req.Filters) {
			match = append(match, in)
		}
	}
	s.mu.Unlock()
	switch {
	case fail != "":
		writeError(w, http.StatusForbidden, fail, "refused by the test")
		return
	case req.Action != "DescribeInstances":
		writeError(w, http.StatusBadRequest, "InvalidAction", "this fake serves DescribeInstances only")
		return
	}
	start := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.NextToken, "page-"))
		if err != nil || n < 0 || n > len(match) {
			writeError(w, http.StatusBadRequest, "InvalidParameterValue", "bad NextToken")
			return
		}
		start = n
	}
	end := min(start+s.PageSize, len(match))
	out := describeInstancesResponse{Xmlns: "http://ec2.amazonaws.com/doc/2016-11-15/", RequestID: "req-" + strconv.Itoa(start)}
	if end < len(match) {
		out.NextToken = "page-" + strconv.Itoa(end)
	}
	// One reservation per instance, as separate launches make.
	for _, in := range match[start:end] {
		x := xmlInstance{ID: in.ID, State: xmlState{Name: in.State}, PrivateIP: in.PrivateIP, PublicIP: in.PublicIP}
		for _, k := range slices.Sorted(maps.Keys(in.Tags)) {
			x.Tags = append(x.Tags, xmlTag{Key: k, Value: in.Tags[k]})
		}
		out.Reservations = append(out.Reservations, xmlReservation{ID: "r-" + in.ID, Instances: []xmlInstance{x}})
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write([]byte(xml.Header))
	xml.NewEncoder(w).Encode(out)
}

// parseFilters reads Filter.N.Name and Filter.N.Value.M, in order.
func parseFilters(form map[string][]string) []Filter {
	var out []Filter
	for n := 1; ; n++ {
		name, ok := form[fmt.Sprintf("Filter.%d.Name", n)]
		if !ok {
			return out
		}
		f := Filter{Name: name[0]}
		for m := 1; ; m++ {
			v, ok := form[fmt.Sprintf("Filter.%d.Value.%d", n, m)]
			if !ok {
				break
			}
			f.Values = append(f.Values, v[0])
		}
		out = append(out, f)
	}
}

// matches applies the filters EC2 would: each filter must match (AND), any
// of its values may (OR). Unknown filter names match nothing.
func matches(in Instance, filters []Filter) bool {
	for _, f := range filters {
		var have string
		var ok bool
		switch {
		case f.Name == "instance-state-name":
			have, ok = in.State, true
		case strings.HasPrefix(f.Name, "tag:"):
			have, ok = in.Tags[strings.TrimPrefix(f.Name, "tag:")]
		}
		if !ok || !slices.Contains(f.Values, have) {
			return false
		}
	}
	return true
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>req-error</RequestID></Response>`, code, msg)
}

type describeInstancesResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type xmlReservation struct {
	ID        string        `xml:"reservationId"`
	Instances []xmlInstance `xml:"instancesSet>item"`
}

type xmlInstance struct {
	ID        string   `xml:"instanceId"`
	State     xmlState `xml:"instanceState"`
	PrivateIP string   `xml:"privateIpAddress,omitempty"`
	PublicIP  string   `xml:"ipAddress,omitempty"`
	Tags      []xmlTag `xml:"tagSet>item"`
}

type xmlState struct {
	Name string `xml:"name"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}
