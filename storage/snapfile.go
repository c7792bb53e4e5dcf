package storage

import (
	"io"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Snapshot files outside a snapshot directory: backups. A backup is a
// snapshot file copied byte for byte, so it carries its own checksums
// (header CRC, data CRC and length in the trailer) wherever it travels,
// and restoring it re-enters the store through Create and Commit like any
// snapshot received from a leader.

// SnapshotFileName is the name a snapshot file has in a snapshot directory.
func SnapshotFileName(meta pb.SnapshotMeta) string { return snapName(meta) }

// OpenSnapshotFile checks the header and trailer of the snapshot file f
// (named path in errors, under any name) and returns its meta and a reader
// of its data. Like Open's, the reader returns an error wrapping
// ErrCorrupt instead of io.EOF when the data does not match its checksum,
// so a consumer must read to io.EOF before trusting what it read. Closing
// f is the caller's job.
func OpenSnapshotFile(f vfs.File, path string) (pb.SnapshotMeta, io.Reader, error) {
	meta, start, err := parseSnapHeader(f, path)
	if err != nil {
		return pb.SnapshotMeta{}, nil, err
	}
	r, err := snapReaderFrom(f, path, start)
	if err != nil {
		return pb.SnapshotMeta{}, nil, err
	}
	return meta, r, nil
}

// VerifySnapshotFile reads the whole snapshot file f and checks every
// checksum; it returns the meta when the file is intact.
func VerifySnapshotFile(f vfs.File, path string) (pb.SnapshotMeta, error) {
	meta, r, err := OpenSnapshotFile(f, path)
	if err != nil {
		return pb.SnapshotMeta{}, err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return pb.SnapshotMeta{}, err
	}
	return meta, nil
}
