package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// Snapshot streaming. Each transfer has its own connection, so a large
// snapshot never delays heartbeats. Flow control is TCP's window: the
// receiver reads the next chunk only when the Handler asks for more bytes,
// so a slow snapshot store slows the sender instead of filling memory.
// Neither side holds more than one chunk.

// endFrameLen is the payload of the end frame: tag and total byte count.
const endFrameLen = 1 + 8

// SendSnapshot streams m (a MsgInstallSnapshot) and data to m.To from a
// goroutine of its own and reports the outcome with ReportSnapshot. data is
// always closed. At most one snapshot is in flight per peer: a second one
// is refused (reported failed) while the first runs. It never blocks.
func (t *Transport) SendSnapshot(m raftpb.Message, data io.ReadCloser) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		data.Close()
		return
	}
	p := t.peers[m.To]
	var reason string
	switch {
	case m.Type != raftpb.MsgInstallSnapshot || m.Snapshot == nil:
		reason = "not a MsgInstallSnapshot with metadata"
	case p == nil:
		reason = "unknown peer"
	case !p.snapshotBusy.CompareAndSwap(false, true):
		reason = "another snapshot in flight"
	}
	if reason != "" {
		data.Close()
		t.warnLimited("transport: refused to send snapshot: "+reason, slog.Uint64("to", uint64(m.To)))
		t.reports.reportSnapshotFailed(m.To)
		return
	}
	t.wg.Add(1)
	go p.sendSnapshot(m, data)
}

// sendSnapshot runs one transfer and reports it. The busy flag is cleared
// before the report so that the Handler may retry from within it.
func (p *peer) sendSnapshot(m raftpb.Message, data io.ReadCloser) {
	defer p.t.wg.Done()
	start := time.Now()
	n, err := p.streamSnapshot(m, data)
	if cerr := data.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("transport: close snapshot data for %d: %w", p.id, cerr)
	}
	p.snapshotBusy.Store(false)
	args := []any{slog.Uint64("peer", uint64(p.id)), slog.Uint64("index", uint64(m.Snapshot.Index)),
		slog.Int64("bytes", n), slog.Duration("took", time.Since(start))}
	if err != nil {
		p.t.log.Warn("transport: snapshot transfer failed", append(args, slog.Any("err", err))...)
	} else {
		p.t.log.Info("transport: snapshot sent", args...)
	}
	p.t.cfg.Handler.ReportSnapshot(p.id, err == nil)
}

// streamSnapshot sends the message, the chunks and the end frame, then
// waits for the receiver's verdict. It returns the data bytes sent.
func (p *peer) streamSnapshot(m raftpb.Message, data io.Reader) (int64, error) {
	conn, err := p.connect(streamSnapshot)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// RemovePeer and Stop interrupt the transfer by closing its connection.
	stop := context.AfterFunc(p.ctx, func() { conn.Close() })
	defer stop()
	n, err := p.writeSnapshotBody(conn, &m, data)
	if err != nil {
		return n, err
	}
	return n, p.awaitVerdict(conn)
}

// writeSnapshotBody writes the message frame, data in chunks, and the end
// frame carrying the total, which lets the receiver tell a complete stream
// from one cut at a chunk boundary. It returns the data bytes sent.
func (p *peer) writeSnapshotBody(conn net.Conn, m *raftpb.Message, data io.Reader) (int64, error) {
	cfg := &p.t.cfg
	bw := bufio.NewWriterSize(conn, writeBufferBytes)
	frame := appendMessageFrame(nil, m)
	if len(frame)-frameHeaderLen > cfg.MaxFrameBytes {
		return 0, fmt.Errorf("transport: snapshot message to %d: %w", p.id, ErrFrameTooLarge)
	}
	if err := p.writeWithDeadline(conn, func() error { _, err := bw.Write(frame); return err }); err != nil {
		return 0, fmt.Errorf("transport: send snapshot to %d: %w", p.id, err)
	}
	chunk := make([]byte, snapshotChunkOverhead+cfg.SnapshotChunkBytes)
	chunk[0] = chunkData
	var total int64
	for {
		n, rerr := io.ReadFull(data, chunk[snapshotChunkOverhead:])
		if n > 0 {
			payload := chunk[:snapshotChunkOverhead+n]
			if err := p.writeWithDeadline(conn, func() error { return writeFrame(bw, payload) }); err != nil {
				return total, fmt.Errorf("transport: send snapshot to %d: %w", p.id, err)
			}
			total += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return total, fmt.Errorf("transport: read snapshot for %d: %w", p.id, rerr)
		}
	}
	end := binary.BigEndian.AppendUint64([]byte{chunkEnd}, uint64(total))
	err := p.writeWithDeadline(conn, func() error {
		if err := writeFrame(bw, end); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return total, fmt.Errorf("transport: send snapshot to %d: %w", p.id, err)
	}
	return total, nil
}

// writeWithDeadline bounds one step of the transfer by WriteTimeout, so a
// receiver that stops reading fails the transfer instead of wedging it.
func (p *peer) writeWithDeadline(conn net.Conn, write func() error) error {
	if err := conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		return err
	}
	return write()
}

// awaitVerdict reads the receiver's one-byte result frame.
func (p *peer) awaitVerdict(conn net.Conn) error {
	if err := conn.SetReadDeadline(time.Now().Add(p.t.cfg.SnapshotAckTimeout)); err != nil {
		return err
	}
	fr := frameReader{r: conn, max: 1}
	res, err := fr.next()
	switch {
	case err != nil:
		return fmt.Errorf("transport: await snapshot verdict from %d: %w", p.id, err)
	case len(res) != 1:
		return fmt.Errorf("transport: snapshot verdict from %d: %w: %d bytes", p.id, ErrCorruptFrame, len(res))
	case res[0] != snapshotAccepted:
		return fmt.Errorf("transport: snapshot rejected by %d", p.id)
	}
	return nil
}

// receiveSnapshot reads the MsgInstallSnapshot, hands the Handler a reader
// over the chunks, and tells the sender whether the snapshot was accepted.
func (t *Transport) receiveSnapshot(ic *inboundConn, conn net.Conn, br *bufio.Reader) {
	fr := &frameReader{r: br, max: t.cfg.MaxFrameBytes}
	payload, err := fr.next()
	if err != nil {
		t.streamBroken(ic, err)
		return
	}
	m, err := decodeMessageFrame(payload)
	if err == nil && (m.Type != raftpb.MsgInstallSnapshot || m.Snapshot == nil || m.From != ic.from || m.To != t.cfg.ID) {
		err = fmt.Errorf("%w: snapshot stream opened by %s", ErrCorruptFrame, m)
	}
	if err != nil {
		t.streamBroken(ic, err)
		return
	}
	sr := &snapshotReader{fr: fr}
	herr := t.cfg.Handler.HandleSnapshot(m, sr)
	if herr == nil && sr.err != io.EOF {
		herr = errors.New("transport: handler returned before the end of the snapshot stream")
	}
	verdict := snapshotAccepted
	if herr != nil {
		verdict = snapshotRejected
		t.log.Warn("transport: snapshot not accepted", slog.Uint64("peer", uint64(ic.from)),
			slog.Uint64("index", uint64(m.Snapshot.Index)), slog.Any("err", herr))
	}
	if sr.err != nil && sr.err != io.EOF {
		return // the stream is broken: nobody to answer
	}
	if err := conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err == nil {
		_ = writeFrame(conn, []byte{verdict})
	}
}

// snapshotReader presents the chunk frames of a snapshot stream as one
// io.Reader. Its error is sticky: io.EOF once the end frame has been seen
// and its total matched, otherwise the reason the stream broke.
type snapshotReader struct {
	fr    *frameReader
	chunk []byte // the current chunk payload, reused
	off   int
	total uint64
	err   error
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	for s.off == len(s.chunk) {
		if s.err != nil {
			return 0, s.err
		}
		s.nextChunk()
	}
	n := copy(p, s.chunk[s.off:])
	s.off += n
	return n, nil
}

func (s *snapshotReader) nextChunk() {
	b, err := s.fr.nextInto(s.chunk[:0])
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // EOF before the end frame is truncation
		}
		s.fail(err)
		return
	}
	switch {
	case len(b) >= 1 && b[0] == chunkData:
		s.chunk, s.off = b, 1
		s.total += uint64(len(b) - 1)
	case len(b) == endFrameLen && b[0] == chunkEnd:
		s.chunk, s.off = b[:0], 0
		if want := binary.BigEndian.Uint64(b[1:]); want != s.total {
			s.fail(fmt.Errorf("%w: snapshot of %d bytes announced, %d received", ErrCorruptFrame, want, s.total))
			return
		}
		s.err = io.EOF
	default:
		s.fail(fmt.Errorf("%w: bad snapshot chunk of %d bytes", ErrCorruptFrame, len(b)))
	}
}

func (s *snapshotReader) fail(err error) {
	s.chunk, s.off = s.chunk[:0], 0
	s.err = fmt.Errorf("transport: snapshot stream: %w", err)
}
