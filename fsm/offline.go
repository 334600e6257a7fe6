package fsm

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CheckOffline checks that path is a quorumca state database that no
// running node holds open: a node keeps the file locked while it runs, so
// opening it read-only times out. Tools that act on a stopped node's data
// dir (admin recovery) call it first.
func CheckOffline(path string) error {
	db, err := openOffline(path)
	if err != nil {
		return err
	}
	return db.Close()
}

// openOffline opens a stopped node's state database read-only: the shared
// lock it takes keeps a node from starting on the file until it is closed.
func openOffline(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is in use: stop the node first", path)
	}
	if err != nil {
		return nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bAdmins) == nil {
			return fmt.Errorf("%s is not a quorumca state database", path)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
