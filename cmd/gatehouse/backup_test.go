package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// TestBackupWhileServingAndRestore: a backup taken while a server is writing (stacks,
// teams, audit events, signed checkpoints) restores into a new data directory, verifies
// (audit chain, checkpoints, keyring canary) and serves; restore is refused while a
// server runs on the target.
func TestBackupWhileServingAndRestore(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text", "--request-log=false", "--audit-checkpoint-every", "50ms")
	var tok string
	waitFor(t, "the admin token", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return tok != ""
	})
	url := "http://" + addr
	waitFor(t, "the server", func() bool {
		code, _ := apiCallNoFatal(url, tok, "GET", "/api/user", nil)
		return code == 200
	})

	// Writers run during the backup.
	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if code, _ := apiCallNoFatal(url, tok, "POST", "/api/stacks/default/web", map[string]any{"stackName": fmt.Sprintf("s%d-%d", w, i)}); code == 200 {
					writes.Add(1)
				}
			}
		}()
	}
	waitFor(t, "some writes", func() bool { return writes.Load() > 20 })
	backup := filepath.Join(t.TempDir(), "gatehouse-backup.db")
	out := mustCLI(t, "backup", "--data-dir", dir, "--to", backup)
	n := writes.Load()
	waitFor(t, "writes after the backup", func() bool { return writes.Load() > n+20 })
	stop.Store(true)
	wg.Wait()
	if !strings.Contains(out, "backed up") {
		t.Errorf("backup: %q", out)
	}
	if _, _, err := runCLIErr(t, "backup", "--data-dir", dir, "--to", backup); err == nil {
		t.Error("backup overwrote an existing file")
	}

	// Restore onto the running server's data directory: refused.
	_, _, err := runCLIErr(t, "restore", "--data-dir", dir, "--from", backup, "--force")
	if err == nil || !strings.Contains(err.Error(), "server is running") {
		t.Errorf("restore under a running server: %v", err)
	}

	// Restore into a new data directory with the key files.
	dir2 := t.TempDir()
	for _, f := range []string{"gatehouse.key", app.AuditKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir2, f), b, 0o600)
	}
	out = mustCLI(t, "restore", "--data-dir", dir2, "--from", backup)
	if !strings.Contains(out, "OK") || strings.Contains(out, "not checked") {
		t.Errorf("restore: %q", out)
	}
	if _, _, err := runCLIErr(t, "restore", "--data-dir", dir2, "--from", backup); err == nil {
		t.Error("restore replaced a database without --force")
	}
	// Without the key file the restore is refused.
	dir3 := t.TempDir()
	if _, _, err := runCLIErr(t, "restore", "--data-dir", dir3, "--from", backup); err == nil || !strings.Contains(err.Error(), "keyring") {
		t.Errorf("restore without the key file: %v", err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.Open(context.Background(), app.Config{DataDir: dir2}, httpapi.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var stacks int
	srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("default")
		if err != nil {
			return err
		}
		list, _, err := tx.ListStacks(gatehouse.StackFilter{OrgIDs: []int64{org.ID}, Limit: 100000})
		stacks = len(list)
		return err
	})
	if stacks < 20 || int64(stacks) > writes.Load() {
		t.Errorf("restored %d stacks; %d were written in all", stacks, writes.Load())
	}
	if out := mustCLI(t, "audit", "verify", "--data-dir", dir2); !strings.Contains(out, "OK") {
		t.Errorf("audit verify of the restored instance: %s", out)
	}
}

// apiCallNoFatal is apiCall for goroutines: errors are a 0 status.
func apiCallNoFatal(url, tok, method, path string, body any) (int, map[string]any) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url+path, rd)
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Authorization", "token "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
