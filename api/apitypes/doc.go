// Package apitypes holds the bodies of the API's requests and replies, one
// definition shared by the server (api) and the Go client (client). It
// imports nothing of the server, so the client and the device agent stay
// small.
//
// The JSON names are the API: never rename one. A request's tags are what
// the client sends; the server decodes strictly, so a field added here is a
// field the server accepts.
package apitypes
