package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/internal/errs"
)

// ACME (RFC 8555) over HTTP: /acme/{provisioner}/... The acme package does
// the protocol; here are the routes, the headers ACME defines (Replay-Nonce
// on every answer, Location, Link) and the statuses. Errors are RFC 7807
// problem documents, as ACME clients expect, which also carry quorumca's
// {"error": {"code", "message"}}.

func (s *Server) acmeRoutes(mux *http.ServeMux) {
	if s.ACME == nil {
		return
	}
	mux.HandleFunc("GET /acme/{prov}/directory", s.acmeDirectory)
	mux.HandleFunc("GET /acme/{prov}/new-nonce", s.acmeNewNonce) // and HEAD
	mux.HandleFunc("GET /acme/{prov}/renewal-info/{id}", s.acmeGet(s.ACME.RenewalInfo))
	// Anything else under /acme/ as a problem document: a GET of a
	// resource read by POST-as-GET, an unknown path.
	mux.HandleFunc("/acme/", s.acmeUnrouted)
	for path, fn := range map[string]func(context.Context, *acme.Call) (*acme.Response, error){
		"new-account":         s.ACME.NewAccount,
		"account/{id}":        s.ACME.Account,
		"key-change":          s.ACME.KeyChange,
		"new-order":           s.ACME.NewOrder,
		"order/{id}":          s.ACME.Order,
		"order/{id}/finalize": s.ACME.Finalize,
		"authz/{id}":          s.ACME.Authz,
		"chall/{id}/{type}":   s.ACME.Challenge,
		"cert/{id}":           s.ACME.Certificate,
		"revoke-cert":         s.ACME.RevokeCert,
		"account/{id}/orders": func(ctx context.Context, c *acme.Call) (*acme.Response, error) {
			return s.ACME.AccountOrders(ctx, c, c.Type)
		},
	} {
		mux.HandleFunc("POST /acme/{prov}/"+path, s.acmePost(fn))
	}
}

// acmeCall reads what every ACME request shares: the provisioner, and the
// URLs its directory is reached at.
func (s *Server) acmeCall(r *http.Request) (*acme.Call, error) {
	prov, err := s.ACME.Provisioner(r.Context(), r.PathValue("prov"))
	if err != nil {
		return nil, err
	}
	origin := s.acmeOrigin(r)
	return &acme.Call{Provisioner: prov, Base: origin + "/acme/" + prov.Name, URL: origin + r.URL.RequestURI(),
		ID: r.PathValue("id"), Type: r.PathValue("type")}, nil
}

// acmeOrigin is the public URL (api.public_urls) the client addressed:
// the one whose host the request names, else the first. A Host header
// never becomes a URL of its own.
func (s *Server) acmeOrigin(r *http.Request) string {
	for _, p := range s.PublicURLs {
		if u, err := url.Parse(p); err == nil && strings.EqualFold(u.Host, r.Host) {
			return strings.TrimSuffix(p, "/")
		}
	}
	return strings.TrimSuffix(s.PublicURLs[0], "/")
}

func (s *Server) acmeUnrouted(w http.ResponseWriter, r *http.Request) {
	p := &acme.Problem{Type: acme.ProbMalformed, Kind: errs.NotFound, Code: "not_found", Detail: "no such ACME resource: " + r.URL.Path}
	if r.Method != http.MethodPost && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 2 {
		w.Header().Set("Allow", "POST")
		p.Code, p.Detail = "method_not_allowed", "ACME resources are read with POST-as-GET (RFC 8555 section 6.3)"
		s.acmeFailStatus(w, r, nil, p, http.StatusMethodNotAllowed)
		return
	}
	s.acmeFail(w, r, nil, p)
}

// acmeGet serves a GET without a JWS (renewalInfo).
func (s *Server) acmeGet(fn func(context.Context, *acme.Call) (*acme.Response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.acmeCall(r)
		if err != nil {
			s.acmeFail(w, r, nil, err)
			return
		}
		resp, err := fn(r.Context(), c)
		if err != nil {
			s.acmeFail(w, r, c, err)
			return
		}
		s.acmeReply(w, r, c, resp)
	}
}

func (s *Server) acmeDirectory(w http.ResponseWriter, r *http.Request) {
	c, err := s.acmeCall(r)
	if err != nil {
		s.acmeFail(w, r, nil, err)
		return
	}
	s.acmeReply(w, r, c, s.ACME.Directory(c))
}

// acmeNewNonce: HEAD answers 200, GET 204 (RFC 8555 section 7.2).
func (s *Server) acmeNewNonce(w http.ResponseWriter, r *http.Request) {
	c, err := s.acmeCall(r)
	if err != nil {
		s.acmeFail(w, r, nil, err)
		return
	}
	s.acmeHeaders(w, c)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) acmePost(fn func(context.Context, *acme.Call) (*acme.Response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.acmeCall(r)
		if err != nil {
			s.acmeFail(w, r, nil, err)
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/jose+json" {
			s.acmeFail(w, r, c, &acme.Problem{Type: acme.ProbMalformed, Kind: errs.Invalid, Code: "unsupported_media_type",
				Detail: "an ACME request is application/jose+json"})
			return
		}
		c.Body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxSignBody))
		if err != nil {
			s.acmeFail(w, r, c, bodyError(err))
			return
		}
		if cursor := r.URL.Query().Get("cursor"); cursor != "" && c.Type == "" {
			c.Type = cursor
		}
		resp, err := fn(r.Context(), c)
		if err != nil {
			if resp != nil && resp.Location != "" {
				w.Header().Set("Location", resp.Location)
			}
			s.acmeFail(w, r, c, err)
			return
		}
		s.acmeReply(w, r, c, resp)
	}
}

// acmeHeaders: a fresh nonce and the directory's link on every answer.
func (s *Server) acmeHeaders(w http.ResponseWriter, c *acme.Call) {
	w.Header().Set("Replay-Nonce", s.ACME.Nonce())
	if c != nil {
		w.Header().Add("Link", `<`+c.Base+`/directory>;rel="index"`)
	}
}

func (s *Server) acmeReply(w http.ResponseWriter, r *http.Request, c *acme.Call, resp *acme.Response) {
	s.acmeHeaders(w, c)
	if resp.Location != "" {
		w.Header().Set("Location", resp.Location)
	}
	for _, l := range resp.Links {
		w.Header().Add("Link", `<`+l.URL+`>;rel="`+l.Rel+`"`)
	}
	if resp.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(resp.RetryAfter.Seconds())))))
	}
	status := http.StatusOK
	if resp.Created {
		status = http.StatusCreated
	}
	switch {
	case resp.PEM != nil:
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.WriteHeader(status)
		w.Write(resp.PEM)
	case resp.Body == nil:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, resp.Body)
	}
}

// acmeProblem is an RFC 7807 problem document with quorumca's error member.
type acmeProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
	Error  struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) acmeFail(w http.ResponseWriter, r *http.Request, c *acme.Call, err error) {
	s.acmeFailStatus(w, r, c, err, 0)
}

// acmeFailStatus is acmeFail with the status given (0: the error's).
func (s *Server) acmeFailStatus(w http.ResponseWriter, r *http.Request, c *acme.Call, err error, status int) {
	var p *acme.Problem
	if status != 0 {
		p = acme.ProblemOf(err)
	} else if errors.As(err, &p) {
		status = statusOf[p.Kind]
		if status == 0 {
			status = http.StatusInternalServerError
		}
	} else {
		var code, msg string
		status, code, msg = s.classify(r, err)
		p = acme.ProblemOf(err)
		p.Code, p.Detail = code, msg
		if status >= 500 {
			p.Type = acme.ProbServerInternal
		}
	}
	setRetryAfter(w, status, err)
	s.report(r, status, p.Code, p.Detail)
	s.acmeHeaders(w, c)
	body := acmeProblem{Type: acme.ProblemPrefix + p.Type, Detail: p.Detail, Status: status}
	body.Error.Code, body.Error.Message = p.Code, p.Detail
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
