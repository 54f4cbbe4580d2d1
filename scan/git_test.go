package scan

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/token"
)

// testRepo is a scratch git repository.
type testRepo struct {
	t   *testing.T
	dir string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found in PATH")
	}
	r := &testRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q")
	return r
}

// git runs git in the repository, isolated from the user's and the system's configuration,
// and returns its trimmed standard output.
func (r *testRepo) git(args ...string) string {
	r.t.Helper()
	full := append([]string{
		"-C", r.dir,
		"-c", "user.name=x", "-c", "user.email=x@example.com",
		"-c", "init.defaultBranch=main", "-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false",
	}, args...)
	cmd := exec.Command("git", full...)
	cmd.Env = append(gitEnv(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// write creates or replaces a file in the work tree.
func (r *testRepo) write(name, content string) {
	r.t.Helper()
	writeFile(r.t, filepath.Join(r.dir, filepath.FromSlash(name)), []byte(content))
}

// commit stages everything and commits, returning the new commit's hash.
func (r *testRepo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func scanHistory(t *testing.T, dir string) []Finding {
	t.Helper()
	var got []Finding
	if err := ScanGitHistory(context.Background(), dir, func(f Finding) { got = append(got, f) }); err != nil {
		t.Fatalf("ScanGitHistory(%s): %v", dir, err)
	}
	return got
}

func TestScanGitHistoryAddedThenRemoved(t *testing.T) {
	r := newTestRepo(t)
	tok := newToken(t, token.Personal)

	r.write("README.md", "# demo\n")
	r.write("config.env", "A=1\nB=2\n")
	r.commit("initial")

	r.write("config.env", "A=1\nTOKEN="+tok+"\nB=2\n")
	r.write("notes.txt", strings.Join(lookAlikes(tok), "\n")+"\n")
	added := r.commit("add token (oops)")

	r.write("config.env", "A=100\nTOKEN="+tok+"\nB=2\nC=3\n") // token stays, other lines change
	r.commit("tweak")

	r.write("config.env", "A=100\nB=2\nC=3\n")
	r.commit("remove token")

	want := []Finding{{Path: "config.env", Line: 2, Column: 7, Commit: added, Kind: token.Personal, Token: tok}}
	if got := scanHistory(t, r.dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
	// The working tree is clean; only history has the token.
	if got := scanPath(t, r.dir); len(got) != 0 {
		t.Fatalf("working tree findings: %+v", got)
	}
	// Any directory inside the work tree, and a bare clone, give the same result.
	r.write("sub/dir/x.txt", "x")
	r.commit("subdir")
	if got := scanHistory(t, filepath.Join(r.dir, "sub", "dir")); !reflect.DeepEqual(got, want) {
		t.Fatalf("from a subdirectory:\n got %+v\nwant %+v", got, want)
	}
	bare := filepath.Join(t.TempDir(), "bare.git")
	r.git("clone", "-q", "--bare", r.dir, bare)
	if got := scanHistory(t, bare); !reflect.DeepEqual(got, want) {
		t.Fatalf("bare clone:\n got %+v\nwant %+v", got, want)
	}
}

func TestScanGitHistoryShapes(t *testing.T) {
	r := newTestRepo(t)
	onSide, renamed, evil, twice, oddPath, tagged := newToken(t, token.Team), newToken(t, token.Org),
		newToken(t, token.Lease), newToken(t, token.Personal), newToken(t, token.Personal), newToken(t, token.Team)

	r.write("base.txt", "base\n")
	r.write("secret.yaml", "key: "+renamed+"\n")
	r.write("dup.txt", twice+"\nsomething\n"+twice+"\n")
	r.write("blob.bin", "\x00\x01binary "+onSide)
	oddName := "dir with space/ünï\tcode\"q.txt"
	if runtime.GOOS != "windows" {
		oddName += "\nnewline"
	}
	r.write(oddName, "v = '"+oddPath+"'")
	root := r.commit("root")

	// A rename carries the token to a new path: reported again under that path.
	r.git("mv", "secret.yaml", "moved.yaml")
	moved := r.commit("rename")

	// A token that only ever lived on an unmerged branch.
	r.git("checkout", "-q", "-b", "side")
	r.write("side.txt", "\n\n   "+onSide+"\n")
	sideCommit := r.commit("side work")

	// A second branch, merged with a token added while resolving the merge.
	r.git("checkout", "-q", "main")
	r.git("checkout", "-q", "-b", "feature")
	r.write("feature.txt", "feature\n")
	r.commit("feature")
	r.git("checkout", "-q", "main")
	r.write("main.txt", "main\n")
	r.commit("main moves on")
	r.git("merge", "-q", "--no-ff", "--no-commit", "feature")
	r.write("merge-fix.txt", "fixed with "+evil+"\n")
	merge := r.commit("merge feature")

	// Merging the side branch brings its token into main: not a new introduction.
	r.git("merge", "-q", "--no-ff", "-m", "merge side", "side")

	// A token reachable only through a tag on an orphan history.
	r.git("checkout", "-q", "--orphan", "orphan")
	r.git("rm", "-q", "-rf", ".")
	r.write("tagged.txt", tagged)
	orphan := r.commit("orphan")
	r.git("tag", "-a", "-m", "t", "v0-orphan")
	r.git("checkout", "-q", "-f", "main")
	r.git("branch", "-q", "-D", "orphan")

	got := scanHistory(t, r.dir)
	want := map[string]Finding{
		"renamed-root":  {Path: "secret.yaml", Line: 1, Column: 6, Commit: root, Kind: token.Org, Token: renamed},
		"renamed-moved": {Path: "moved.yaml", Line: 1, Column: 6, Commit: moved, Kind: token.Org, Token: renamed},
		"twice":         {Path: "dup.txt", Line: 1, Column: 1, Commit: root, Kind: token.Personal, Token: twice},
		"odd path":      {Path: oddName, Line: 1, Column: 6, Commit: root, Kind: token.Personal, Token: oddPath},
		"side":          {Path: "side.txt", Line: 3, Column: 4, Commit: sideCommit, Kind: token.Team, Token: onSide},
		"evil merge":    {Path: "merge-fix.txt", Line: 1, Column: 12, Commit: merge, Kind: token.Lease, Token: evil},
		"tag only":      {Path: "tagged.txt", Line: 1, Column: 1, Commit: orphan, Kind: token.Team, Token: tagged},
	}
	gotSet := make(map[Finding]bool)
	for _, f := range got {
		if gotSet[f] {
			t.Errorf("duplicate finding %+v", f)
		}
		gotSet[f] = true
	}
	for name, f := range want {
		if !gotSet[f] {
			t.Errorf("missing %s finding %+v", name, f)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d findings, want %d:\n%+v", len(got), len(want), got)
	}
}

func TestScanGitHistorySkipsLargeBlobs(t *testing.T) {
	r := newTestRepo(t)
	tok := newToken(t, token.Personal)
	r.write("big.txt", tok+"\n"+strings.Repeat("x", MaxFileSize))
	r.write("edge.txt", tok+"\n"+strings.Repeat("y", MaxFileSize-len(tok)-1))
	c := r.commit("big")
	want := []Finding{{Path: "edge.txt", Line: 1, Column: 1, Commit: c, Kind: token.Personal, Token: tok}}
	if got := scanHistory(t, r.dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestScanGitHistoryIgnoresGitEnvironment(t *testing.T) {
	// Inside a git hook GIT_DIR points at the hook's repository; the scan must still read
	// the repository it was given.
	r, other := newTestRepo(t), newTestRepo(t)
	tok := newToken(t, token.Personal)
	r.write("a", tok)
	c := r.commit("a")
	other.write("b", "nothing")
	other.commit("b")
	t.Setenv("GIT_DIR", filepath.Join(other.dir, ".git"))
	t.Setenv("GIT_WORK_TREE", other.dir)
	want := []Finding{{Path: "a", Line: 1, Column: 1, Commit: c, Kind: token.Personal, Token: tok}}
	if got := scanHistory(t, r.dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestScanGitHistoryMissingBlob(t *testing.T) {
	r := newTestRepo(t)
	tok := newToken(t, token.Personal)
	r.write("kept.txt", tok)
	r.write("lost.txt", "this blob will be deleted from the object store")
	c := r.commit("two files")
	lost := r.git("rev-parse", "HEAD:lost.txt")
	if err := os.Remove(filepath.Join(r.dir, ".git", "objects", lost[:2], lost[2:])); err != nil {
		t.Fatal(err)
	}
	var got []Finding
	err := ScanGitHistory(context.Background(), r.dir, func(f Finding) { got = append(got, f) })
	if err == nil || !strings.Contains(err.Error(), "1 blob(s) missing") {
		t.Fatalf("err = %v, want a missing-blob error", err)
	}
	want := []Finding{{Path: "kept.txt", Line: 1, Column: 1, Commit: c, Kind: token.Personal, Token: tok}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the rest must still be scanned: got %+v", got)
	}
}

func TestScanGitHistoryErrors(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found in PATH")
	}
	t.Run("not a directory", func(t *testing.T) {
		err := ScanGitHistory(context.Background(), filepath.Join(t.TempDir(), "nope"), func(Finding) {})
		if err == nil || !strings.Contains(err.Error(), "git log") {
			t.Fatalf("err = %v, want a git log error", err)
		}
	})
	t.Run("empty repository", func(t *testing.T) {
		r := newTestRepo(t)
		if got := scanHistory(t, r.dir); len(got) != 0 {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		r := newTestRepo(t)
		r.write("a", newToken(t, token.Personal))
		r.commit("a")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n := 0
		err := ScanGitHistory(ctx, r.dir, func(Finding) { n++ })
		if !errors.Is(err, context.Canceled) || n != 0 {
			t.Fatalf("err = %v, findings = %d; want context.Canceled, 0", err, n)
		}
	})
}

func TestParseRaw(t *testing.T) {
	z := strings.Repeat("0", 40)
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 64) // SHA-256 repos too
	for _, tc := range []struct {
		in   string
		want rawEntry
		ok   bool
	}{
		{":100644 100644 " + a + " " + b + " M", rawEntry{[]string{"100644"}, []string{a}, "100644", b}, true},
		{":000000 100755 " + z + " " + b + " A", rawEntry{[]string{"000000"}, []string{z}, "100755", b}, true},
		{"::100644 100644 100644 " + a + " " + b + " " + c + " MM", rawEntry{[]string{"100644", "100644"}, []string{a, b}, "100644", c}, true},
		{":100644 100644 " + a + " M", rawEntry{}, false},
		{":100644 100644 " + a + " xyz M", rawEntry{}, false},
		{"::100644 100644 " + a + " " + b + " M", rawEntry{}, false},
		{":", rawEntry{}, false},
	} {
		got, err := parseRaw(tc.in)
		if (err == nil) != tc.ok || tc.ok && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRaw(%q) = %+v, %v; want %+v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if isBlob("160000", a) || isBlob("100644", z) || !isBlob("100755", a) || !isBlob("120000", a) {
		t.Error("isBlob misclassifies")
	}
}
