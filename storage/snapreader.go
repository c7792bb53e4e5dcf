package storage

import (
	"encoding/binary"
	"hash/crc32"
	"io"

	"github.com/raftkv/raftkv/storage/vfs"
)

// snapReader streams a snapshot's data through a checksum.
type snapReader struct {
	f    vfs.File
	path string
	sec  *io.SectionReader
	want uint32
	crc  uint32
	end  int64 // offset of the trailer
}

func newSnapReader(f vfs.File, path string) (*snapReader, error) {
	_, start, err := readSnapHeader(f, path)
	if err != nil {
		return nil, err
	}
	return snapReaderFrom(f, path, start)
}

// snapReaderFrom checks the trailer of a file whose data starts at start.
func snapReaderFrom(f vfs.File, path string, start int64) (*snapReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := fi.Size() - snapTrailerBytes
	if end < start {
		return nil, corruptf(path, fi.Size(), "snapshot is shorter than its header and trailer")
	}
	tr := make([]byte, snapTrailerBytes)
	if _, err := f.ReadAt(tr, end); err != nil {
		return nil, corruptf(path, end, "snapshot trailer: %v", err)
	}
	if string(tr[12:]) != snapTrailerMagic {
		return nil, corruptf(path, end, "snapshot trailer magic missing")
	}
	if n := binary.LittleEndian.Uint64(tr); n != uint64(end-start) {
		return nil, corruptf(path, end, "trailer says %d bytes of data, the file holds %d", n, end-start)
	}
	return &snapReader{f: f, path: path, sec: io.NewSectionReader(f, start, end-start),
		want: binary.LittleEndian.Uint32(tr[8:]), end: end}, nil
}

func (r *snapReader) Read(p []byte) (int, error) {
	n, err := r.sec.Read(p)
	r.crc = crc32.Update(r.crc, crcTable, p[:n])
	if err == io.EOF && r.crc != r.want {
		return n, corruptf(r.path, r.end, "snapshot data checksum %08x, trailer says %08x", r.crc, r.want)
	}
	return n, err
}

func (r *snapReader) Close() error { return r.f.Close() }
