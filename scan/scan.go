// Package scan finds leaked Gatehouse tokens in text, in files and directory trees, and in
// the history of git repositories. It backs `gatehouse scan`.
//
// A finding is a string that matches [token.Pattern] and passes [token.Parse], i.e. has a
// valid checksum; look-alikes (wrong prefix, wrong kind, wrong length, bad checksum) are not
// reported. Nothing here contacts the server: whether a found token is live is for the
// caller to find out (and a found token should be treated as compromised and revoked).
package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Finding is one occurrence of a token.
type Finding struct {
	// Path is the file the token was found in: as walked from the root given to ScanPath
	// (or the path given to ScanText), or the slash-separated path inside the commit for
	// ScanGitHistory.
	Path string
	// Line is the 1-based line number.
	Line int
	// Column is the 1-based byte offset of the token's first character within its line.
	Column int
	// Commit is the full hash of the commit that introduced the token at Path; empty for
	// working-tree files.
	Commit string
	// Kind is the token's kind.
	Kind token.Kind
	// Token is the full token value. It is a secret: callers must redact it (token.Redact)
	// before displaying or logging it.
	Token string
}

const (
	// MaxFileSize is the size above which files and git blobs are skipped.
	MaxFileSize = 10 << 20
	// binarySniffLen is how much of a file is inspected for a NUL byte to classify it as
	// binary (git itself looks at the first 8000 bytes).
	binarySniffLen = 8 << 10
	// maxCandidate bounds the word runs that are kept for matching. It must be at least the
	// length of the longest token; FuzzScanText cross-checks the scanner against
	// token.Pattern, so a too-small bound fails the fuzz test.
	maxCandidate = 128
)

// isWord reports the bytes that regexp's \b treats as word characters: [0-9A-Za-z_].
var isWord = func() (t [256]bool) {
	for c := range 256 {
		t[c] = '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_'
	}
	return t
}()

// ScanText reports every token in the text read from r, calling fn for each one in order of
// appearance. path is only copied into the findings. ScanText streams its input: memory
// use does not depend on the size of the input or the length of its lines. It returns an
// error only if reading r fails; findings made before the failure have been reported.
func ScanText(path string, r io.Reader, fn func(Finding)) error {
	// token.Pattern is bounded by \b on both sides and matches only word characters, so a
	// match is always a whole maximal run of word characters. The scanner therefore splits
	// the input into such runs, keeps the (short) ones that could be tokens, and tests each
	// with token.Pattern and token.Parse. This gives the same results as running
	// token.Pattern over the whole input, without holding the input or a line in memory.
	var (
		buf       [32 << 10]byte
		run       = make([]byte, 0, maxCandidate)
		inRun     bool
		candidate bool // the current run may still be a token
		line      = 1
		col       = 0 // 0-based byte offset of the next byte within its line
		runLine   int
		runCol    int
	)
	flush := func() {
		if !candidate || !token.Pattern.Match(run) {
			return
		}
		s := string(run)
		k, err := token.Parse(s)
		if err != nil {
			return // a look-alike
		}
		fn(Finding{Path: path, Line: runLine, Column: runCol + 1, Kind: k, Token: s})
	}
	for {
		n, err := r.Read(buf[:])
		for _, c := range buf[:n] {
			if isWord[c] {
				if !inRun {
					inRun, candidate = true, c == 'g'
					run = run[:0]
					runLine, runCol = line, col
				}
				if candidate {
					if len(run) < maxCandidate {
						run = append(run, c)
					} else {
						candidate = false
					}
				}
			} else if inRun {
				inRun = false
				flush()
			}
			if c == '\n' {
				line++
				col = 0
			} else {
				col++
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("scan: reading %s: %w", path, err)
		}
	}
	if inRun {
		flush()
	}
	return nil
}

// ScanPath scans a file, or every file in a directory tree, and calls fn for each token
// found. It skips directories named .git, symbolic links (a symbolic link given as root is
// followed), files that are not regular (devices, pipes, sockets), files larger than
// MaxFileSize, and binary files (a NUL byte in the first 8 KiB).
//
// Files and directories that cannot be read do not stop the scan: ScanPath scans
// everything else and returns the errors joined. It stops early and returns ctx.Err() if
// ctx is cancelled. fn is called from the calling goroutine.
func ScanPath(ctx context.Context, root string, fn func(Finding)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	walkRoot := root
	if info.Mode()&fs.ModeSymlink != 0 {
		if walkRoot, err = filepath.EvalSymlinks(root); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if info, err = os.Lstat(walkRoot); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return fmt.Errorf("scan: %s is not a regular file or directory", root)
		}
		if err := scanFile(root, walkRoot, info, fn); err != nil {
			return err
		}
		return ctx.Err()
	}

	var errs []error
	err = filepath.WalkDir(walkRoot, func(p string, d fs.DirEntry, err error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil {
			// p could not be read (or, for a directory, listed); keep going elsewhere.
			errs = append(errs, fmt.Errorf("scan: %w", err))
			if d != nil && d.IsDir() && p != walkRoot {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != walkRoot {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // symlinks, devices, named pipes, sockets
		}
		info, err := d.Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("scan: %w", err))
			return nil
		}
		shown := p
		if walkRoot != root {
			rel, err := filepath.Rel(walkRoot, p)
			if err != nil {
				return fmt.Errorf("scan: %w", err) // cannot happen: p is under walkRoot
			}
			shown = filepath.Join(root, rel)
		}
		if err := scanFile(shown, p, info, fn); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// scanFile scans the regular file at p, whose Lstat result is info, reporting findings
// under the path shown. It skips large and binary files.
func scanFile(shown, p string, info fs.FileInfo, fn func(Finding)) error {
	if info.Size() > MaxFileSize {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer f.Close()
	// The file could have been swapped for a symlink or another file since it was listed.
	if opened, err := f.Stat(); err != nil {
		return fmt.Errorf("scan: %w", err)
	} else if !opened.Mode().IsRegular() || !os.SameFile(info, opened) {
		return nil
	}
	head := make([]byte, binarySniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("scan: reading %s: %w", shown, err)
	}
	head = head[:n]
	if bytes.IndexByte(head, 0) >= 0 {
		return nil
	}
	// Bound the read in case the file grows while it is being scanned.
	rest := io.LimitReader(f, MaxFileSize-int64(n))
	return ScanText(shown, io.MultiReader(bytes.NewReader(head), rest), fn)
}
