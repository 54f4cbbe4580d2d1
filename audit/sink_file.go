package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// fileSink appends events to a local file, one line per event, and fsyncs each batch.
type fileSink struct {
	name   string
	path   string
	format string
	host   string

	mu      sync.Mutex
	f       *os.File
	lastSeq int64 // the highest seq in the file, when known: absorbs repeated batches
	buf     []byte
}

// openFileSink opens file:///abs/path[?format=jsonl|cef|ocsf].
func openFileSink(u *url.URL, name, host string) (Sink, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("audit: file sink URL must be file:///absolute/path (host %q not allowed)", u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, errors.New("audit: file sink URL must name an absolute path: file:///var/log/gatehouse/audit.jsonl")
	}
	q := u.Query()
	format, err := parseFormat(q)
	if err != nil {
		return nil, err
	}
	for k := range q {
		if k != "format" && k != "name" && k != "hostname" {
			return nil, fmt.Errorf("audit: unknown file sink parameter %q", k)
		}
	}
	return OpenFileSink(filepath.Clean(u.Path), format, name, host)
}

// OpenFileSink opens (creating it with mode 0600 if needed) the file at path for appending
// events in format (FormatJSONL, FormatCEF or FormatOCSF). Each Write appends the batch and
// fsyncs. On open, a torn last line (from a crash during a write that was therefore never
// acknowledged) is cut off, and the seq of the last line is read back, so that a batch the
// Exporter repeats after a crash is not written twice.
func OpenFileSink(path, format, name, host string) (Sink, error) {
	if _, err := parseFormat(url.Values{"format": {format}}); err != nil {
		return nil, err
	}
	if name == "" {
		name = (&url.URL{Scheme: "file", Path: path}).String()
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: opening file sink: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: opening file sink: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("audit: file sink %s is not a regular file", path)
	}
	s := &fileSink{name: name, path: path, format: format, host: syslogToken(host, 255), f: f}
	if err := s.recover(fi.Size()); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *fileSink) Name() string { return s.name }

// recover cuts a torn last line and reads the seq of the last complete one.
func (s *fileSink) recover(size int64) error {
	if size == 0 {
		return nil
	}
	end, err := s.lastNewline(size)
	if err != nil {
		return err
	}
	if end != size-1 {
		// The last line has no newline: a write that crashed half way. It was never
		// acknowledged, so the Exporter will send it again.
		if err := s.f.Truncate(end + 1); err != nil {
			return fmt.Errorf("audit: cutting torn line from file sink: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("audit: file sink: %w", err)
		}
		size = end + 1
	}
	if size == 0 {
		return nil
	}
	start, err := s.lastNewline(size - 1)
	if err != nil {
		return err
	}
	if size-1-(start+1) > MaxJSONLine {
		return nil // not ours to parse; no deduplication
	}
	line := make([]byte, size-1-(start+1))
	if _, err := s.f.ReadAt(line, start+1); err != nil {
		return fmt.Errorf("audit: reading file sink: %w", err)
	}
	s.lastSeq = lastSeqOfLine(s.format, line)
	return nil
}

// lastNewline returns the offset of the last '\n' before offset before (-1 if none),
// scanning backwards in chunks.
func (s *fileSink) lastNewline(before int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end := before; end > 0; {
		start := max(end-chunk, 0)
		n, err := s.f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("audit: reading file sink: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i), nil
		}
		end = start
	}
	return -1, nil
}

// lastSeqOfLine extracts the seq of a line in format, 0 if it cannot.
func lastSeqOfLine(format string, line []byte) int64 {
	switch format {
	case FormatCEF:
		_, ext, err := ParseCEF(string(line))
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(ext["cn1"], 10, 64)
		return n
	case FormatOCSF:
		var o struct {
			Metadata struct {
				Sequence int64 `json:"sequence"`
			} `json:"metadata"`
		}
		if json.Unmarshal(line, &o) != nil {
			return 0
		}
		return o.Metadata.Sequence
	default:
		var j struct {
			Seq int64 `json:"seq"`
		}
		if json.Unmarshal(line, &j) != nil {
			return 0
		}
		return j.Seq
	}
}

func (s *fileSink) Write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("audit: file sink is closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Skip what the file already holds (a batch repeated after a crash or a failed ack).
	i := 0
	for i < len(batch) && batch[i].Seq <= s.lastSeq {
		i++
	}
	batch = batch[i:]
	if len(batch) == 0 {
		return nil
	}
	var err error
	s.buf, err = encodeBatch(s.buf[:0], s.format, s.host, batch)
	if err != nil {
		return err
	}
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: file sink %s: %w", s.path, err)
	}
	if _, err := s.f.Write(s.buf); err != nil {
		// Undo a partial append so that the retry does not follow a torn line.
		_ = s.f.Truncate(fi.Size())
		return fmt.Errorf("audit: writing file sink %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: syncing file sink %s: %w", s.path, err)
	}
	s.lastSeq = batch[len(batch)-1].Seq
	return nil
}

func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
