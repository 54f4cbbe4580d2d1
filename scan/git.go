package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ScanGitHistory scans every blob reachable from any ref of the git repository at repoDir
// (a work tree, any directory inside one, or a bare repository) and calls fn once per token,
// path and commit that introduced the token at that path. Line and Column refer to the file
// as it is in that commit. A token that stays in a file over many commits is reported once,
// at the commit that added it; a token that is removed and later added back, copied to
// another file, or carried into a renamed file is reported again for that commit and path.
// Merge commits report only tokens present in none of the parents at that path (e.g. added
// while resolving a conflict).
//
// Blobs larger than MaxFileSize, binary blobs (a NUL byte in the first 8 KiB) and submodule
// entries are skipped. Commit and tag messages, the index (staged but uncommitted files) and
// unreachable objects are not scanned.
//
// ScanGitHistory runs the git binary found in PATH. It asks git not to fetch missing objects
// of a partial clone (GIT_NO_LAZY_FETCH, honoured by git 2.44 and later) and returns an error
// if blobs are missing from the object store, after scanning all the others. fn is called
// from the calling goroutine.
func ScanGitHistory(ctx context.Context, repoDir string, fn func(Finding)) (err error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One pass over history lists, for every commit, the blobs that differ from its parents:
	// --raw gives the old and new blob IDs per path, -c does the same for merges against
	// all parents, --root lists the whole tree of root commits (and of the boundary commit
	// of a shallow clone), --no-renames turns renames into a delete and an add, and -z
	// keeps paths verbatim.
	logCmd := gitCommand(runCtx, repoDir, "log", "--all", "--root", "-c", "--raw", "-z",
		"--no-renames", "--no-abbrev", "--no-color", "--no-ext-diff", "--no-textconv",
		"--no-show-signature", "--format=%x00commit %H")
	stdout, err := logCmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("scan: git log in %s: %w", repoDir, err)
	}
	logStderr := new(limitedBuffer)
	logCmd.Stderr = logStderr
	if err := logCmd.Start(); err != nil {
		return fmt.Errorf("scan: starting git log in %s: %w", repoDir, err)
	}

	blobs := newBlobScanner(runCtx, repoDir)
	defer func() {
		if cerr := blobs.close(); cerr != nil && err == nil && ctx.Err() == nil {
			err = cerr
		}
	}()

	w := &historyWalker{blobs: blobs, fn: fn, seen: make(map[string]struct{})}
	walkErr := w.walk(runCtx, bufio.NewReaderSize(stdout, 64<<10))
	if walkErr != nil {
		cancel() // stop git log; its output is no longer read
	}
	waitErr := logCmd.Wait()

	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case walkErr != nil:
		return fmt.Errorf("scan: git history of %s: %w", repoDir, walkErr)
	case waitErr != nil:
		return fmt.Errorf("scan: git log in %s: %w%s", repoDir, waitErr, logStderr.suffix())
	case blobs.missing > 0:
		return fmt.Errorf("scan: git history of %s: %d blob(s) missing from the object store "+
			"(partial or damaged clone?) were not scanned", repoDir, blobs.missing)
	}
	return nil
}

// historyWalker consumes the output of git log --raw -z and reports findings.
type historyWalker struct {
	blobs *blobScanner
	fn    func(Finding)
	seen  map[string]struct{} // commit NUL path NUL token, already reported
}

// walk reads the log output. The output is a sequence of NUL-terminated fields: "commit
// <hash>" markers (possibly preceded by newlines), and for each changed path a raw
// header (":<modes> <oids> <status>", one colon per parent) followed by the path.
func (w *historyWalker) walk(ctx context.Context, r *bufio.Reader) error {
	var commit string
	var pending *rawEntry // header waiting for its path
	for {
		field, err := r.ReadString(0)
		if err == io.EOF {
			if field != "" || pending != nil {
				return errors.New("truncated git log output")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading git log output: %w", err)
		}
		field = field[:len(field)-1]
		if pending != nil {
			// A path: taken verbatim, it may contain anything but NUL.
			if err := w.entry(commit, pending, field); err != nil {
				return err
			}
			pending = nil
			continue
		}
		field = strings.TrimLeft(field, "\n")
		switch {
		case field == "":
		case strings.HasPrefix(field, "commit "):
			if err := ctx.Err(); err != nil {
				return err
			}
			commit = strings.TrimPrefix(field, "commit ")
			if !isHex(commit) {
				return fmt.Errorf("unexpected commit marker %q in git log output", field)
			}
		case field[0] == ':':
			e, err := parseRaw(field)
			if err != nil {
				return err
			}
			if commit == "" {
				return errors.New("raw diff entry before any commit in git log output")
			}
			pending = &e
		default:
			return fmt.Errorf("unexpected field %q in git log output", field)
		}
	}
}

// rawEntry is one path of a commit's raw diff against its parents.
type rawEntry struct {
	parentModes, parentOIDs []string // one per parent
	mode, oid               string   // in the commit itself
}

// parseRaw parses a raw diff header: ":<mode> <mode> <oid> <oid> <status>" for a commit
// with one parent, or with n colons, n+1 modes and n+1 object IDs for a merge with n parents
// (combined format).
func parseRaw(s string) (rawEntry, error) {
	n := 0
	for n < len(s) && s[n] == ':' {
		n++
	}
	f := strings.Fields(s[n:])
	if len(f) != 2*(n+1)+1 {
		return rawEntry{}, fmt.Errorf("unexpected raw diff entry %q in git log output", s)
	}
	modes, oids := f[:n+1], f[n+1:2*n+2]
	for _, oid := range oids {
		if !isHex(oid) {
			return rawEntry{}, fmt.Errorf("unexpected object ID %q in git log output", oid)
		}
	}
	return rawEntry{parentModes: modes[:n], parentOIDs: oids[:n], mode: modes[n], oid: oids[n]}, nil
}

// entry reports the tokens in the blob at path in commit that none of the parents' blobs
// at the same path contain.
func (w *historyWalker) entry(commit string, e *rawEntry, path string) error {
	if !isBlob(e.mode, e.oid) {
		return nil // deleted, or a submodule
	}
	hits, err := w.blobs.hitsOf(e.oid)
	if err != nil || len(hits) == 0 {
		return err
	}
	inParent := make(map[string]bool)
	for i, oid := range e.parentOIDs {
		if !isBlob(e.parentModes[i], oid) {
			continue
		}
		ph, err := w.blobs.hitsOf(oid)
		if err != nil {
			return err
		}
		for _, h := range ph {
			inParent[h.Token] = true
		}
	}
	for _, h := range hits {
		if inParent[h.Token] {
			continue
		}
		key := commit + "\x00" + path + "\x00" + h.Token
		if _, dup := w.seen[key]; dup {
			continue
		}
		w.seen[key] = struct{}{}
		h.Path, h.Commit = path, commit
		w.fn(h)
	}
	return nil
}

// isBlob reports whether a raw diff side with this mode and object ID is a blob: a regular
// file or a symbolic link, not a deletion ("000000", all-zero ID) and not a submodule
// ("160000", whose ID names a commit in another repository).
func isBlob(mode, oid string) bool {
	return (strings.HasPrefix(mode, "10") || mode == "120000") && strings.Trim(oid, "0") != ""
}

func isHex(s string) bool {
	if len(s) < 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// blobScanner scans blobs by ID, remembering the results.
type blobScanner struct {
	ctx     context.Context
	repoDir string
	check   *catFile // git cat-file --batch-check: type and size
	batch   *catFile // git cat-file --batch: contents

	hits    map[string][]Finding // blobs with tokens; Path and Commit unset
	clean   map[string]struct{}  // blobs without tokens, skipped or missing
	missing int
	buf     []byte
}

func newBlobScanner(ctx context.Context, repoDir string) *blobScanner {
	return &blobScanner{
		ctx: ctx, repoDir: repoDir,
		hits: make(map[string][]Finding), clean: make(map[string]struct{}),
	}
}

// hitsOf returns the tokens in blob oid, in order of appearance, with the first occurrence
// of each token only.
func (b *blobScanner) hitsOf(oid string) ([]Finding, error) {
	if h, ok := b.hits[oid]; ok {
		return h, nil
	}
	if _, ok := b.clean[oid]; ok {
		return nil, nil
	}
	h, err := b.scan(oid)
	if err != nil {
		return nil, err
	}
	if len(h) == 0 {
		b.clean[oid] = struct{}{}
	} else {
		b.hits[oid] = h
	}
	return h, nil
}

func (b *blobScanner) scan(oid string) ([]Finding, error) {
	if b.check == nil {
		var err error
		if b.check, err = startCatFile(b.ctx, b.repoDir, "--batch-check"); err != nil {
			return nil, err
		}
		if b.batch, err = startCatFile(b.ctx, b.repoDir, "--batch"); err != nil {
			return nil, err
		}
	}
	typ, size, err := b.check.info(oid)
	if err != nil {
		return nil, err
	}
	switch {
	case typ == "missing":
		b.missing++
		return nil, nil
	case typ != "blob" || size > MaxFileSize:
		return nil, nil
	}
	if b.buf, err = b.batch.contents(oid, size, b.buf); err != nil {
		return nil, err
	}
	if bytes.IndexByte(b.buf[:min(len(b.buf), binarySniffLen)], 0) >= 0 {
		return nil, nil // binary
	}
	var hits []Finding
	seen := make(map[string]bool)
	err = ScanText("", bytes.NewReader(b.buf), func(f Finding) {
		if !seen[f.Token] {
			seen[f.Token] = true
			hits = append(hits, f)
		}
	})
	return hits, err
}

// close stops the cat-file processes.
func (b *blobScanner) close() error {
	var errs []error
	for _, c := range []*catFile{b.check, b.batch} {
		if c != nil {
			errs = append(errs, c.close())
		}
	}
	return errors.Join(errs...)
}

// catFile is a running `git cat-file --batch` or `--batch-check` process.
type catFile struct {
	mode   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	w      *bufio.Writer
	r      *bufio.Reader
	stderr *limitedBuffer
}

func startCatFile(ctx context.Context, repoDir, mode string) (*catFile, error) {
	cmd := gitCommand(ctx, repoDir, "cat-file", mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("scan: git cat-file %s in %s: %w", mode, repoDir, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("scan: git cat-file %s in %s: %w", mode, repoDir, err)
	}
	stderr := new(limitedBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scan: starting git cat-file %s in %s: %w", mode, repoDir, err)
	}
	return &catFile{
		mode: mode, cmd: cmd, stdin: stdin, stderr: stderr,
		w: bufio.NewWriter(stdin), r: bufio.NewReaderSize(stdout, 64<<10),
	}, nil
}

// request asks for oid and returns the fields of the response header: "<oid> <type>
// <size>", or "<oid> missing".
func (c *catFile) request(oid string) ([]string, error) {
	c.w.WriteString(oid)
	c.w.WriteByte('\n')
	if err := c.w.Flush(); err != nil {
		return nil, c.fail(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, c.fail(err)
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != oid || !(len(f) == 3 || len(f) == 2 && f[1] == "missing") {
		return nil, c.fail(fmt.Errorf("unexpected response %q for %s", strings.TrimSpace(line), oid))
	}
	return f, nil
}

// info returns the type and size of object oid, or type "missing".
func (c *catFile) info(oid string) (typ string, size int64, err error) {
	f, err := c.request(oid)
	if err != nil {
		return "", 0, err
	}
	if f[1] == "missing" {
		return "missing", 0, nil
	}
	size, err = strconv.ParseInt(f[2], 10, 64)
	if err != nil || size < 0 {
		return "", 0, c.fail(fmt.Errorf("bad size in response for %s", oid))
	}
	return f[1], size, nil
}

// contents returns the contents of blob oid, which info reported to have the given size,
// reusing buf.
func (c *catFile) contents(oid string, size int64, buf []byte) ([]byte, error) {
	f, err := c.request(oid)
	if err != nil {
		return buf, err
	}
	if len(f) != 3 || f[2] != strconv.FormatInt(size, 10) {
		return buf, c.fail(fmt.Errorf("object %s changed between requests", oid))
	}
	if int64(cap(buf)) < size+1 {
		buf = make([]byte, size+1)
	}
	buf = buf[:size+1] // contents and the terminating newline
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return buf[:0], c.fail(err)
	}
	return buf[:size], nil
}

func (c *catFile) fail(err error) error {
	return fmt.Errorf("scan: git cat-file %s: %w%s", c.mode, err, c.stderr.suffix())
}

func (c *catFile) close() error {
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		return c.fail(err)
	}
	return nil
}

// gitCommand returns a git command run in repoDir. Options that could change what is read
// or run code from the repository's configuration are pinned: no pager, no replace refs,
// no fsmonitor, no signature checks (which run gpg), no external diff or textconv drivers,
// and diffs over the whole repository even when repoDir is a subdirectory.
func gitCommand(ctx context.Context, repoDir string, args ...string) *exec.Cmd {
	full := append([]string{
		"--no-pager", "--no-replace-objects", "-C", repoDir,
		"-c", "core.fsmonitor=false",
		"-c", "log.showSignature=false",
		"-c", "diff.relative=false",
	}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Env = gitEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// gitEnv returns the environment for git: the current one without the variables that
// would point git at another repository (set, for instance, when running inside a git
// hook), never prompting, and never fetching missing objects of a partial clone.
func gitEnv() []string {
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
			"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
			"GIT_REPLACE_REF_BASE", "GIT_SHALLOW_FILE", "GIT_GRAFT_FILE", "GIT_PREFIX":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GIT_TERMINAL_PROMPT=0", "GIT_NO_LAZY_FETCH=1", "GIT_OPTIONAL_LOCKS=0")
}

// limitedBuffer collects the first 4 KiB written to it; it is safe for concurrent use.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 4<<10 - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// suffix returns ": <collected text>" or "" if nothing was collected.
func (b *limitedBuffer) suffix() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := strings.TrimSpace(string(b.buf)); s != "" {
		return ": " + s
	}
	return ""
}
