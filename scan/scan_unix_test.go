//go:build unix

package scan

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

func TestScanPathSkipsSpecialFiles(t *testing.T) {
	root := t.TempDir()
	tok := newToken(t, token.Personal)
	writeFile(t, filepath.Join(root, "z.txt"), []byte(tok))
	// Opening a FIFO without a writer would block forever.
	if err := syscall.Mkfifo(filepath.Join(root, "a.fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n := 0
		err := ScanPath(context.Background(), root, func(Finding) { n++ })
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		if res.err != nil || res.n != 1 {
			t.Fatalf("findings = %d, err = %v; want 1, nil", res.n, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ScanPath blocked on a FIFO")
	}
}

func TestScanPathUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permissions are not enforced")
	}
	root := t.TempDir()
	tok := newToken(t, token.Team)
	writeFile(t, filepath.Join(root, "a-locked.txt"), []byte(tok))
	writeFile(t, filepath.Join(root, "b-open.txt"), []byte(tok))
	writeFile(t, filepath.Join(root, "c-lockeddir", "x.txt"), []byte(tok))
	if err := os.Chmod(filepath.Join(root, "a-locked.txt"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "c-lockeddir"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "c-lockeddir"), 0o755) })
	var got []Finding
	err := ScanPath(context.Background(), root, func(f Finding) { got = append(got, f) })
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("err = %v, want fs.ErrPermission", err)
	}
	if len(got) != 1 || got[0].Path != filepath.Join(root, "b-open.txt") {
		t.Fatalf("readable files must still be scanned: got %+v", got)
	}
}
