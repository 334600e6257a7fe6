package fsm

import (
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"slices"
	"time"
)

// The binary frames of envelopes and hot payloads: uvarint lengths and
// counts, fixed-size integers big-endian. Slices and byte strings are
// written as count+1 with 0 for nil, so nil and empty survive a round
// trip as JSON kept them apart.

var errTruncated = errors.New("truncated")

func appendString(out []byte, s string) []byte {
	out = binary.AppendUvarint(out, uint64(len(s)))
	return append(out, s...)
}

func appendBytes(out, b []byte) []byte {
	if b == nil {
		return append(out, 0)
	}
	out = binary.AppendUvarint(out, uint64(len(b))+1)
	return append(out, b...)
}

func appendStrings(out []byte, ss []string) []byte {
	if ss == nil {
		return append(out, 0)
	}
	out = binary.AppendUvarint(out, uint64(len(ss))+1)
	for _, s := range ss {
		out = appendString(out, s)
	}
	return out
}

// appendMap writes a map in key order, so equal maps encode alike.
func appendMap(out []byte, m map[string]string) []byte {
	if m == nil {
		return append(out, 0)
	}
	out = binary.AppendUvarint(out, uint64(len(m))+1)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = appendString(out, k)
		out = appendString(out, m[k])
	}
	return out
}

// appendTime writes the zero time as one 0 byte, any other as 1, Unix
// seconds (varint) and nanoseconds; it decodes in UTC.
func appendTime(out []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(out, 0)
	}
	out = append(out, 1)
	out = binary.AppendVarint(out, t.Unix())
	return binary.AppendUvarint(out, uint64(t.Nanosecond()))
}

// reader reads a binary frame; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) uvarint(max uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint16() uint16 { return uint16(r.uvarint(math.MaxUint16)) }

func (r *reader) uint64() uint64 {
	if len(r.b) < 8 {
		r.fail(errTruncated)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errTruncated)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// raw returns the next n bytes, sharing the frame's memory.
func (r *reader) raw(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail(errTruncated)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.raw(r.uvarint(uint64(len(r.b))))) }

// count reads a count+1 (0: nil); ok is false for nil or after an error.
// Each element takes at least one byte, so a count beyond the bytes left
// is refused before anything is allocated for it.
func (r *reader) count() (n int, ok bool) {
	c := r.uvarint(uint64(len(r.b)) + 1)
	if c == 0 || r.err != nil {
		return 0, false
	}
	return int(c - 1), true
}

func (r *reader) bytes() []byte {
	n, ok := r.count()
	if !ok {
		return nil
	}
	return slices.Clone(r.raw(uint64(n))) // records outlive the log entry's buffer
}

func (r *reader) strings() []string {
	n, ok := r.count()
	if !ok {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, r.string())
	}
	return out
}

func (r *reader) stringMap() map[string]string {
	n, ok := r.count()
	if !ok {
		return nil
	}
	out := make(map[string]string, n)
	for range n {
		k := r.string()
		out[k] = r.string()
	}
	return out
}

func (r *reader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint(999_999_999)
		return time.Unix(sec, int64(nsec)).UTC()
	}
	r.fail(errors.New("bad time flag"))
	return time.Time{}
}

// end fails unless the whole frame was read.
func (r *reader) end() error {
	if r.err == nil && len(r.b) > 0 {
		r.fail(errors.New("trailing bytes"))
	}
	return r.err
}
