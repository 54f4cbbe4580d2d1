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
	// And an update runs during the backup: its lease is held and checkpoints arrive.
	run := startRunningUpdate(t, url, tok, "default", "web", "running")
	var checkpoints atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; !stop.Load(); i++ {
			body := map[string]any{"version": 3, "deployment": testDeployment(i)}
			if code := leaseCall(url, run.lease, "PATCH", run.path+"/checkpoint", body); code == 200 {
				checkpoints.Store(int64(i))
			}
		}
	}()
	waitFor(t, "some writes", func() bool { return writes.Load() > 20 && checkpoints.Load() > 5 })
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
	if stacks < 20 || int64(stacks) > writes.Load()+1 {
		t.Errorf("restored %d stacks; %d were written in all", stacks, writes.Load()+1)
	}
	// The update that was running when the backup was taken is there, still running (its
	// lease expires, or it is cancelled, as after a crash), with a whole checkpoint: one the
	// CLI had sent, not a torn one.
	srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUpdate(run.id)
		if err != nil {
			t.Errorf("the running update is not in the backup: %v", err)
			return nil
		}
		if u.Status != gatehouse.StatusRunning {
			t.Errorf("restored update status %q, want running", u.Status)
		}
		data, _, err := tx.GetCheckpoint(u.StackID, -1)
		if err != nil {
			t.Errorf("the running update's checkpoint: %v", err)
			return nil
		}
		var dep struct {
			Deployment struct {
				Resources []json.RawMessage `json:"resources"`
			} `json:"deployment"`
			Resources []json.RawMessage `json:"resources"`
		}
		if err := json.Unmarshal(data, &dep); err != nil {
			t.Errorf("the restored checkpoint is not JSON: %v", err)
			return nil
		}
		n := max(len(dep.Deployment.Resources), len(dep.Resources))
		if n < 5 || int64(n) > checkpoints.Load() {
			t.Errorf("restored checkpoint has %d resources; checkpoints of 1..%d were sent", n, checkpoints.Load())
		}
		return nil
	})
	if out := mustCLI(t, "audit", "verify", "--data-dir", dir2); !strings.Contains(out, "OK") {
		t.Errorf("audit verify of the restored instance: %s", out)
	}
}

type runningUpdate struct{ id, lease, path string }

// startRunningUpdate creates and starts an update of a new stack, as the CLI does.
func startRunningUpdate(t *testing.T, url, tok, org, project, stack string) runningUpdate {
	t.Helper()
	sp := "/api/stacks/" + org + "/" + project
	if code, body := apiCall(t, url, tok, "POST", sp, map[string]any{"stackName": stack}); code != 200 {
		t.Fatalf("create stack: %d %v", code, body)
	}
	sp += "/" + stack
	code, created := apiCall(t, url, tok, "POST", sp+"/update", map[string]any{"name": project, "runtime": "nodejs", "options": map[string]any{}, "metadata": map[string]any{}})
	if code != 200 {
		t.Fatalf("create update: %d %v", code, created)
	}
	id, _ := created["updateID"].(string)
	code, started := apiCall(t, url, tok, "POST", sp+"/update/"+id, map[string]any{"tags": map[string]string{}})
	if code != 200 {
		t.Fatalf("start update: %d %v", code, started)
	}
	lease, _ := started["token"].(string)
	return runningUpdate{id: id, lease: lease, path: sp + "/update/" + id}
}

// testDeployment is a deployment of n resources (a stack and n-1 components).
func testDeployment(n int) map[string]any {
	res := make([]map[string]any, n)
	for i := range res {
		typ := "test:index:Comp"
		if i == 0 {
			typ = "pulumi:pulumi:Stack"
		}
		res[i] = map[string]any{"urn": fmt.Sprintf("urn:pulumi:running::web::%s::r%d", typ, i), "custom": false, "type": typ}
	}
	return map[string]any{"manifest": map[string]any{"time": "2026-12-05T00:00:00Z", "magic": "", "version": "v3.260.0"}, "resources": res}
}

// leaseCall is a call with the update's lease token; errors are a 0 status.
func leaseCall(url, lease, method, path string, body any) int {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, url+path, bytes.NewReader(b))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "update-token "+lease)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
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
