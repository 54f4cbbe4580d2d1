package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// uidPool hands out the uids of --run-uids, one per run in progress: a run executes all
// its commands under its own uid (and gid of the same number), whose processes are killed
// and whose files are removed when the run ends, before the uid is handed out again.
type uidPool struct {
	lo, hi uint32
	mu     sync.Mutex
	busy   map[uint32]bool // in use by a run of this runner, or quarantined
	next   uint32          // where the next search starts (uids are used in turn)
}

// parseUIDRange reads "FIRST-LAST" (or a single uid).
func parseUIDRange(s string) (*uidPool, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return nil, fmt.Errorf("runner: --run-uids %q: want FIRST-LAST, e.g. 61000-61999", s)
	case lo == 0 || hi < lo || hi >= 1<<32-1:
		return nil, fmt.Errorf("runner: --run-uids %q: want FIRST-LAST with 0 < FIRST <= LAST < 4294967295", s)
	case lo < 1000:
		return nil, fmt.Errorf("runner: --run-uids %q: uids below 1000 are the system's; take a range of unused uids (e.g. 61000-61999)", s)
	}
	return &uidPool{lo: uint32(lo), hi: uint32(hi), busy: map[uint32]bool{}, next: uint32(lo)}, nil
}

func (p *uidPool) contains(uid uint32) bool { return uid >= p.lo && uid <= p.hi }

// acquire takes a uid that no run of this runner uses and that has no process (another
// runner's run, or a run's leftovers the runner could not kill).
func (p *uidPool) acquire() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live, err := processUIDs()
	if err != nil {
		return 0, fmt.Errorf("runner: cannot list the host's processes to pick a run uid: %w", err)
	}
	n := uint64(p.hi-p.lo) + 1
	uid := p.next
	for i := uint64(0); i < n; i++ {
		if uid < p.lo || uid > p.hi {
			uid = p.lo
		}
		if !p.busy[uid] && !live[uid] {
			p.busy[uid] = true
			p.next = uid + 1
			return uid, nil
		}
		uid++
	}
	return 0, fmt.Errorf("runner: no free uid in --run-uids %d-%d (each is used by a run or has processes)", p.lo, p.hi)
}

func (p *uidPool) release(uid uint32) {
	p.mu.Lock()
	delete(p.busy, uid)
	p.mu.Unlock()
}

// checkReachable says why path (a directory when dir, else an executable file) cannot be
// reached by a run's uid: each directory on its way must be searchable by others, an
// executable executable by others.
func checkReachable(path string, dir bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o001 == 0 {
		if dir {
			return fmt.Errorf("%s is not searchable by the run uids (chmod o+x)", abs)
		}
		return fmt.Errorf("%s is not executable by the run uids (chmod o+x)", abs)
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (on the way to %s) is not searchable by the run uids (chmod o+x)", d, abs)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// copyForRun copies the runner's file src into the run's directory as name, owned by the
// run's uid and readable by it alone.
func copyForRun(src, dir, name string, uid uint32) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		return "", err
	}
	return dst, os.Chown(dst, int(uid), int(uid))
}

// errIsolation is returned where runs cannot be isolated (not Linux).
var errIsolation = errors.New("runner: --run-uids works on Linux only")
