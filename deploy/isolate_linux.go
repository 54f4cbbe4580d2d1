//go:build linux

package deploy

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func isolationSupported() error { return nil }

// setCredential runs cmd as uid (and the gid of the same number), with no supplementary
// group.
func setCredential(cmd *exec.Cmd, uid uint32) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
}

// procEntry is a process of /proc: its pid and its uids (real, effective, saved, file
// system); zombies (which run nothing) are left out.
type procEntry struct {
	pid  int
	uids [4]uint32
}

func listProcesses() ([]procEntry, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []procEntry
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue // gone meanwhile
		}
		p := procEntry{pid: pid}
		ok, zombie := false, false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "State:"):
				st := strings.Fields(strings.TrimPrefix(l, "State:"))
				zombie = len(st) > 0 && (st[0] == "Z" || st[0] == "X")
			case strings.HasPrefix(l, "Uid:"):
				fs := strings.Fields(strings.TrimPrefix(l, "Uid:"))
				if len(fs) == 4 {
					ok = true
					for i, v := range fs {
						n, err := strconv.ParseUint(v, 10, 32)
						if err != nil {
							ok = false
						}
						p.uids[i] = uint32(n)
					}
				}
			}
		}
		f.Close()
		if ok && !zombie {
			out = append(out, p)
		}
	}
	return out, nil
}

// processUIDs is the set of uids that have a (live) process.
func processUIDs() (map[uint32]bool, error) {
	ps, err := listProcesses()
	if err != nil {
		return nil, err
	}
	m := map[uint32]bool{}
	for _, p := range ps {
		for _, u := range p.uids {
			m[u] = true
		}
	}
	return m, nil
}

// processesOf lists the live processes any of whose uids is uid.
func processesOf(uid uint32) ([]int, error) {
	ps, err := listProcesses()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range ps {
		for _, u := range p.uids {
			if u == uid {
				pids = append(pids, p.pid)
				break
			}
		}
	}
	return pids, nil
}

// killUID kills every process of a run's uid (those it left behind: background,
// setsid, double-forked), scanning /proc and sending SIGKILL to each until none is left
// (a process killed cannot fork any more, so the rounds end); it gives up after timeout.
// Only a uid of the pool is ever killed, never root's.
func (p *uidPool) killUID(uid uint32, timeout time.Duration) error {
	if uid == 0 || !p.contains(uid) {
		return fmt.Errorf("runner: refusing to kill the processes of uid %d (not in --run-uids)", uid)
	}
	self, parent := os.Getpid(), os.Getppid()
	deadline := time.Now().Add(timeout)
	for round := 0; ; round++ {
		pids, err := processesOf(uid)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runner: %d processes of run uid %d survive SIGKILL (pids %v)", len(pids), uid, pids)
		}
		for _, pid := range pids {
			if pid > 1 && pid != self && pid != parent {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(time.Duration(min(round+1, 20)) * 5 * time.Millisecond)
	}
}

// sweepTemp removes what uid left at the top of the shared temporary directories (its
// processes are dead by now, so nothing is added or swapped meanwhile).
func sweepTemp(uid uint32) {
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == uid {
				_ = os.RemoveAll(filepath.Join(d, e.Name()))
			}
		}
	}
}
