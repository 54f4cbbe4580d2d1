package scan

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Tokens in these tests are minted at run time, never written as literals, so that
// scanning this repository does not report its own fixtures.

func newToken(t testing.TB, k token.Kind) string {
	t.Helper()
	s, err := token.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lookAlikes returns strings that resemble tok but must not be reported.
func lookAlikes(tok string) []string {
	last := tok[len(tok)-1]
	bad := byte('0')
	if last == '0' {
		bad = '1'
	}
	kindChanged := strings.Replace(tok, "_pat_", "_org_", 1) // checksum covers the kind
	return []string{
		tok[:len(tok)-1] + string(bad),           // bad checksum
		"Gatehouse" + tok[len("gatehouse"):],     // wrong prefix
		"gatehouse-" + tok[len("gatehouse_"):],   // wrong separator
		"pul-" + strings.Repeat("0123456789", 4), // Pulumi's format
		tok[:len(tok)-1],                         // truncated
		kindChanged,                              // kind edited
		"x" + tok,                                // part of a longer word
		tok + "y",                                //
		tok + "_",                                //
		"9" + tok,                                //
	}
}

// collect runs ScanText over data and returns the findings.
func collect(t testing.TB, path string, r io.Reader) []Finding {
	t.Helper()
	var got []Finding
	if err := ScanText(path, r, func(f Finding) { got = append(got, f) }); err != nil {
		t.Fatalf("ScanText: %v", err)
	}
	return got
}

// reference finds tokens the obvious way: token.Pattern over the whole input, filtered by
// token.Parse. ScanText must agree with it on every input.
func reference(path string, data []byte) []Finding {
	var out []Finding
	for _, m := range token.Pattern.FindAllIndex(data, -1) {
		s := string(data[m[0]:m[1]])
		k, err := token.Parse(s)
		if err != nil {
			continue
		}
		lineStart := bytes.LastIndexByte(data[:m[0]], '\n') + 1
		out = append(out, Finding{
			Path:   path,
			Line:   bytes.Count(data[:m[0]], []byte{'\n'}) + 1,
			Column: m[0] - lineStart + 1,
			Kind:   k,
			Token:  s,
		})
	}
	return out
}

func TestScanTextPositions(t *testing.T) {
	pat, team, org, lease := newToken(t, token.Personal), newToken(t, token.Team), newToken(t, token.Org), newToken(t, token.Lease)
	text := "first line\n" +
		"PULUMI_ACCESS_TOKEN=" + pat + "\r\n" +
		"\n" +
		team + "\n" +
		`{"a":"` + org + `","b":"` + lease + `"}` + "\n" +
		"héllo " + pat // non-ASCII before: Column counts bytes
	want := []Finding{
		{Path: "f", Line: 2, Column: 21, Kind: token.Personal, Token: pat},
		{Path: "f", Line: 4, Column: 1, Kind: token.Team, Token: team},
		{Path: "f", Line: 5, Column: 7, Kind: token.Org, Token: org},
		{Path: "f", Line: 5, Column: 7 + len(org) + 7, Kind: token.Lease, Token: lease},
		{Path: "f", Line: 6, Column: 8, Kind: token.Personal, Token: pat},
	}
	got := collect(t, "f", strings.NewReader(text))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
	if ref := reference("f", []byte(text)); !reflect.DeepEqual(got, ref) {
		t.Fatalf("ScanText disagrees with the regexp reference:\n got %+v\n ref %+v", got, ref)
	}
}

func TestScanTextIgnoresLookAlikes(t *testing.T) {
	tok := newToken(t, token.Personal)
	text := strings.Join(lookAlikes(tok), "\n") + "\n" + strings.Join(lookAlikes(tok), " ")
	if got := collect(t, "f", strings.NewReader(text)); len(got) != 0 {
		t.Fatalf("look-alikes reported: %+v", got)
	}
}

func TestScanTextReaders(t *testing.T) {
	// Tokens straddling read boundaries must be found whatever the reads look like.
	tok := newToken(t, token.Lease)
	var b strings.Builder
	for i := range 3000 {
		b.WriteString(strings.Repeat("w", i%97))
		b.WriteString(" ")
		if i%211 == 0 {
			b.WriteString(tok)
			b.WriteString("\n")
		}
	}
	data := []byte(b.String())
	want := reference("f", data)
	if len(want) == 0 {
		t.Fatal("bad test: no tokens in input")
	}
	for name, r := range map[string]io.Reader{
		"plain":   bytes.NewReader(data),
		"onebyte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":    iotest.HalfReader(bytes.NewReader(data)),
		"dataerr": iotest.DataErrReader(bytes.NewReader(data)),
	} {
		if got := collect(t, "f", r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s reader: %d findings, want %d", name, len(got), len(want))
		}
	}
}

func TestScanTextLongLinesAndRuns(t *testing.T) {
	tok := newToken(t, token.Team)
	long := strings.Repeat("g", 3<<20)
	text := long + " " + tok + " " + long + tok + " " + strings.Repeat("a", 1<<20) + "\t" + tok
	got := collect(t, "f", strings.NewReader(text))
	want := []Finding{
		{Path: "f", Line: 1, Column: len(long) + 2, Kind: token.Team, Token: tok},
		{Path: "f", Line: 1, Column: 2*len(long) + 2*len(tok) + 1<<20 + 5, Kind: token.Team, Token: tok},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestScanTextReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	tok := newToken(t, token.Org)
	var got []Finding
	err := ScanText("f", io.MultiReader(strings.NewReader(tok+"\n"), iotest.ErrReader(boom)), func(f Finding) {
		got = append(got, f)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping %v", err, boom)
	}
	if len(got) != 1 {
		t.Fatalf("findings before the error: %d, want 1", len(got))
	}
}

func TestMaxCandidateCoversEveryKind(t *testing.T) {
	for _, k := range []token.Kind{token.Personal, token.Team, token.Org, token.Lease, token.SCIM} {
		if n := len(newToken(t, k)); n > maxCandidate {
			t.Errorf("%s tokens are %d bytes, longer than maxCandidate %d", k, n, maxCandidate)
		}
	}
}

// writeFile creates path (and its parents) with the given contents.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func scanPath(t *testing.T, root string) []Finding {
	t.Helper()
	var got []Finding
	if err := ScanPath(context.Background(), root, func(f Finding) { got = append(got, f) }); err != nil {
		t.Fatalf("ScanPath(%s): %v", root, err)
	}
	return got
}

func TestScanPathTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	pat, team, hidden := newToken(t, token.Personal), newToken(t, token.Team), newToken(t, token.Org)

	writeFile(t, filepath.Join(root, "a.txt"), []byte("hello\nTOKEN="+pat+"\n"))
	writeFile(t, filepath.Join(root, "sub", "deep", "b.env"), []byte(team))
	writeFile(t, filepath.Join(root, "sub", "lookalikes.txt"), []byte(strings.Join(lookAlikes(pat), "\n")))
	// Skipped: .git directories at any depth, binary files, large files, symlinks.
	writeFile(t, filepath.Join(root, ".git", "config"), []byte(hidden))
	writeFile(t, filepath.Join(root, "sub", "vendored", ".git", "packed-refs"), []byte(hidden))
	writeFile(t, filepath.Join(root, "image.png"), append([]byte("\x89PNG\x00\x00"), hidden...))
	big := append([]byte(hidden+"\n"), bytes.Repeat([]byte("x"), MaxFileSize)...)
	writeFile(t, filepath.Join(root, "big.log"), big)
	writeFile(t, filepath.Join(outside, "secret.txt"), []byte(hidden))
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(root, "link.txt")); err != nil {
		t.Skipf("symlinks not supported: %v", err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	// A file of exactly MaxFileSize is scanned; a NUL after the first 8 KiB does not make
	// a file binary.
	edge := append([]byte(team+"\n"), bytes.Repeat([]byte("y"), MaxFileSize-len(team)-1)...)
	edge[9000] = 0
	writeFile(t, filepath.Join(root, "edge.log"), edge)

	got := scanPath(t, root)
	want := []Finding{
		{Path: filepath.Join(root, "a.txt"), Line: 2, Column: 7, Kind: token.Personal, Token: pat},
		{Path: filepath.Join(root, "edge.log"), Line: 1, Column: 1, Kind: token.Team, Token: team},
		{Path: filepath.Join(root, "sub", "deep", "b.env"), Line: 1, Column: 1, Kind: token.Team, Token: team},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
}

func TestScanPathRoots(t *testing.T) {
	dir := t.TempDir()
	tok := newToken(t, token.Personal)
	file := filepath.Join(dir, "creds")
	writeFile(t, file, []byte("  "+tok))

	t.Run("file", func(t *testing.T) {
		got := scanPath(t, file)
		if len(got) != 1 || got[0].Path != file || got[0].Column != 3 {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("explicit .git root", func(t *testing.T) {
		gitDir := filepath.Join(t.TempDir(), ".git")
		writeFile(t, filepath.Join(gitDir, "config"), []byte(tok))
		if got := scanPath(t, gitDir); len(got) != 1 {
			t.Fatalf("a .git directory named as root is scanned: got %+v", got)
		}
	})
	t.Run("symlink root is followed", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(dir, link); err != nil {
			t.Skipf("symlinks not supported: %v", err)
		}
		got := scanPath(t, link)
		if len(got) != 1 || got[0].Path != filepath.Join(link, "creds") {
			t.Fatalf("got %+v", got)
		}
		fileLink := filepath.Join(t.TempDir(), "filelink")
		if err := os.Symlink(file, fileLink); err != nil {
			t.Fatal(err)
		}
		got = scanPath(t, fileLink)
		if len(got) != 1 || got[0].Path != fileLink {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("missing", func(t *testing.T) {
		err := ScanPath(context.Background(), filepath.Join(dir, "nope"), func(Finding) {})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n := 0
		err := ScanPath(ctx, dir, func(Finding) { n++ })
		if !errors.Is(err, context.Canceled) || n != 0 {
			t.Fatalf("err = %v, findings = %d; want context.Canceled, 0", err, n)
		}
	})
}

func BenchmarkScanText(b *testing.B) {
	// 4 MiB of source-like text with one token.
	line := []byte(`	if err := client.Do(ctx, "gatehouse_pat_notatoken", map[string]any{"x": 42}); err != nil {` + "\n")
	half := bytes.Repeat(line, (2<<20)/len(line))
	data := slices.Concat(half, []byte(newToken(b, token.Personal)+"\n"), half)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := ScanText("f", bytes.NewReader(data), func(Finding) { n++ }); err != nil || n != 1 {
			b.Fatalf("n = %d, err = %v", n, err)
		}
	}
}
