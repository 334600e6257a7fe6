package fsm

import (
	"errors"
	"sync"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
)

// A leaf's DER repeats its issuer's: the issuer's name, the authority key
// ID, the OCSP, issuer and CRL URLs, the extension and algorithm
// identifiers, the key usages. So a binary record holds its DER compressed
// (zstd) against a dictionary of its issuer: the DER of the first leaf that
// issuer stored in the binary layout, pinned in record_dicts once, never
// changed. What is left is what is the certificate's own: serial, validity,
// names, key, signature (a P-256 leaf with URLs: 737 bytes, 240
// compressed). The first leaf of an issuer, and any DER that compresses no
// smaller, is stored as it is.

var bRecordDicts = []byte("record_dicts") // authority, 0, issuer -> DER of the dictionary leaf

const (
	derRaw  = 0 // the DER as it is
	derZstd = 1 // zstd, against the issuer's dictionary, no checksum

	maxRecordDER = 64 << 10 // a DER that decompresses larger is corrupt
)

// dictCodec compresses and decompresses against one dictionary; both are
// safe for concurrent use.
type dictCodec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// dictCodecs holds a codec per dictionary, by its bytes: a dictionary
// never changes under its key, but a restored state may hold others.
type dictCodecs struct {
	mu sync.Mutex
	m  map[string]*dictCodec
}

func (d *dictCodecs) get(dict []byte) (*dictCodec, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.m[string(dict)]; ok {
		return c, nil
	}
	own := string(dict) // the bolt page is not ours to keep
	// No entropy coding: what a leaf does not share with the dictionary
	// is its key, serial and signature, which Huffman does not shrink, and
	// building the tables was half of compressing (a P-256 leaf: 17 µs and
	// 186 bytes with it, 9 µs and about 188 without).
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(1, []byte(own)), zstd.WithEncoderCRC(false),
		zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true),
		zstd.WithNoEntropyCompression(true))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(1, []byte(own)), zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(maxRecordDER), zstd.WithDecoderMaxWindow(1<<20))
	if err != nil {
		enc.Close()
		return nil, err
	}
	if d.m == nil {
		d.m = map[string]*dictCodec{}
	}
	c := &dictCodec{enc: enc, dec: dec}
	d.m[own] = c
	return c, nil
}

func dictKey(authority, issuer string) []byte { return []byte(authority + "\x00" + issuer) }

// appendRecordDER writes c's DER for its record: compressed against its
// issuer's dictionary, pinning c's DER as that dictionary when the issuer
// has none.
func appendRecordDER(a *applyCtx, out []byte, c *Cert) []byte {
	key := dictKey(c.Authority, c.Issuer)
	dict := a.tx.Bucket(bRecordDicts).Get(key)
	if dict == nil && len(c.DER) > 0 {
		put(a.tx, bRecordDicts, key, c.DER)
	}
	if dict != nil && len(c.DER) > 0 {
		if codec, err := a.f.dicts.get(dict); err == nil {
			z := codec.enc.EncodeAll(c.DER, nil)
			if len(z) < len(c.DER) {
				out = append(out, derZstd)
				return appendBytes(out, z)
			}
		}
	}
	out = append(out, derRaw)
	return appendBytes(out, c.DER)
}

// readRecordDER reads what appendRecordDER wrote.
func (f *FSM) readRecordDER(tx *bolt.Tx, r *reader, c *Cert) {
	enc := r.byte()
	b := r.bytes()
	switch {
	case r.err != nil:
	case enc == derRaw:
		c.DER = b
	case enc == derZstd:
		dict := tx.Bucket(bRecordDicts).Get(dictKey(c.Authority, c.Issuer))
		if dict == nil {
			r.fail(errors.New("compressed against a dictionary the state lacks"))
			return
		}
		codec, err := f.dicts.get(dict)
		if err == nil {
			c.DER, err = codec.dec.DecodeAll(b, make([]byte, 0, 3*len(b)))
		}
		if err != nil {
			r.fail(err)
		}
	default:
		r.fail(errors.New("unknown DER encoding"))
	}
}
