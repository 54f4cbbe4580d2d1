package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// testKeyURL returns a base64key:// URL with a new random key, and the key's encoding.
func testKeyURL(t testing.TB) (url, encoded string) {
	t.Helper()
	encoded = base64.URLEncoding.EncodeToString(mustKey(t))
	return "base64key://" + encoded, encoded
}

func openTestKeyring(t testing.TB) *Keyring {
	t.Helper()
	url, _ := testKeyURL(t)
	k, err := OpenKeyring(context.Background(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func skipPermsOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
}

func TestDefaultKeyFileCreatedAndReused(t *testing.T) {
	skipPermsOnWindows(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	k1, err := OpenKeyring(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer k1.Close()
	if !k1.Created() {
		t.Error("Created() = false for a new key file")
	}
	path := filepath.Join(dir, KeyFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", perm)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm()&0o077 != 0 {
		t.Errorf("data directory created with mode %04o", di.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		t.Fatalf("key file does not hold a base64 32-byte key (%d bytes, %v)", len(key), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("data directory has %d entries, want only the key file", len(entries))
	}

	dek := mustKey(t)
	w, err := k1.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}

	k2, err := OpenKeyring(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if k2.Created() {
		t.Error("Created() = true for an existing key file")
	}
	if k1.Describe() != k2.Describe() {
		t.Errorf("reopened keyring describes as %q, first as %q", k2.Describe(), k1.Describe())
	}
	got, err := k2.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("reopened key file does not unwrap: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(raw, after) {
		t.Fatal("key file changed on reuse")
	}
	if d := k1.Describe(); !strings.HasPrefix(d, "file://") || !strings.Contains(d, KeyFileName) || strings.Contains(d, strings.TrimSpace(string(raw))) {
		t.Errorf("Describe() = %q", d)
	}
}

func TestDefaultKeyFileConcurrentCreate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 16
	descs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := OpenKeyring(ctx, "", dir)
			if err != nil {
				t.Error(err)
				return
			}
			descs[i] = k.Describe()
			k.Close()
		})
	}
	wg.Wait()
	for _, d := range descs[1:] {
		if d != descs[0] {
			t.Fatalf("concurrent openers got different keys: %q vs %q", d, descs[0])
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files left in the data directory, want 1", len(entries))
	}
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFileName)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return dir
}

func TestDefaultKeyFileRefusedWhenReadableByOthers(t *testing.T) {
	skipPermsOnWindows(t)
	content := base64.StdEncoding.EncodeToString(mustKey(t)) + "\n"
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o666, 0o602} {
		dir := writeKeyFile(t, content, mode)
		_, err := OpenKeyring(context.Background(), "", dir)
		if err == nil {
			t.Fatalf("mode %04o: key file accepted", mode)
		}
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: error does not say how to fix it: %v", mode, err)
		}
		if strings.Contains(err.Error(), strings.TrimSpace(content)) {
			t.Fatalf("error leaks the key: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, KeyFileName)); string(b) != content {
			t.Fatal("refused key file was modified")
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		dir := writeKeyFile(t, content, mode)
		k, err := OpenKeyring(context.Background(), "", dir)
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		k.Close()
	}
}

func TestDefaultKeyFileMalformed(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	long := base64.StdEncoding.EncodeToString(make([]byte, 33))
	good := base64.StdEncoding.EncodeToString(mustKey(t))
	for name, content := range map[string]string{
		"empty":     "",
		"garbage":   "this is not base64!!\n",
		"short key": short,
		"long key":  long,
		"two keys":  good + "\n" + good + "\n",
		"huge":      strings.Repeat("A", 10000),
	} {
		dir := writeKeyFile(t, content, 0o600)
		_, err := OpenKeyring(context.Background(), "", dir)
		if err == nil {
			t.Fatalf("%s: malformed key file accepted", name)
		}
		if !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%s: unclear error: %v", name, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, KeyFileName)); string(b) != content {
			t.Fatalf("%s: malformed key file was replaced", name)
		}
	}
	// Surrounding whitespace and URL-safe encoding are fine.
	dir := writeKeyFile(t, "\n  "+base64.URLEncoding.EncodeToString(mustKey(t))+"  \r\n", 0o600)
	if _, err := OpenKeyring(context.Background(), "", dir); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultKeyFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, KeyFileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeyring(context.Background(), "", dir); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("directory as key file: %v", err)
	}
}

func TestOpenKeyringNeedsDataDir(t *testing.T) {
	if _, err := OpenKeyring(context.Background(), "", ""); err == nil {
		t.Fatal("no URL and no data directory accepted")
	}
}

func TestBase64KeyNeverShown(t *testing.T) {
	ctx := context.Background()
	url, encoded := testKeyURL(t)
	k, err := OpenKeyring(ctx, url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if d := k.Describe(); strings.Contains(d, encoded) || !strings.HasPrefix(d, "base64key://") {
		t.Fatalf("Describe() = %q", d)
	}
	canary, _ := k.MakeCanary(ctx)
	if bytes.Contains(canary, []byte(encoded)) {
		t.Fatal("canary holds the key")
	}
	// Standard encoding (with '/' and '+') works too.
	std := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32])
	k2, err := OpenKeyring(ctx, "base64key://"+std, "")
	if err != nil {
		t.Fatal(err)
	}
	k2.Close()

	for _, bad := range []string{
		"base64key://",
		"base64key://" + encoded[:20],
		"base64key://" + encoded + "?x=1",
		"base64key://" + encoded + "AAAA",
		"BASE64KEY://not-a-key-" + encoded[:10],
	} {
		_, err := OpenKeyring(ctx, bad, "")
		if err == nil {
			t.Fatalf("accepted %q", bad)
		}
		if strings.Contains(err.Error(), encoded[:10]) {
			t.Fatalf("error leaks key material: %v", err)
		}
	}
}

func TestOpenKeyringRejects(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{"nonsense", "file:///etc/passwd", "gcppubsub://x", "mem://"} {
		if _, err := OpenKeyring(ctx, url, ""); !errors.Is(err, ErrUnsupportedScheme) {
			t.Errorf("%q: err %v, want ErrUnsupportedScheme", url, err)
		}
	}
	_, err := OpenKeyring(ctx, "hashivault://user:s3cr3t@mykey", "")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("user info: %v", err)
	}
	_, err = OpenKeyring(ctx, "hashivault://mykey?token=s3cr3t", "")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("unknown query parameter: %v", err)
	}
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	k := openTestKeyring(t)
	dek := mustKey(t)
	w, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, dek) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := k.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := k.Wrap(ctx, dek[:16]); err == nil {
		t.Error("wrapped a 16-byte key")
	}
	if _, err := k.Unwrap(ctx, nil); err == nil {
		t.Error("unwrapped nothing")
	}
	w[len(w)-1] ^= 1
	if _, err := k.Unwrap(ctx, w); err == nil || errors.Is(err, ErrDecrypt) {
		t.Errorf("tampered wrapped key: %v (must fail, and not as a client-side ErrDecrypt)", err)
	}
	if _, err := openTestKeyring(t).Unwrap(ctx, w); err == nil {
		t.Error("another keyring unwrapped the key")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := k.Wrap(ctx, dek); err == nil {
		t.Fatal("Wrap after Close succeeded")
	}
}

func TestCanary(t *testing.T) {
	ctx := context.Background()
	k := openTestKeyring(t)
	canary, err := k.MakeCanary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyCanary(ctx, canary); err != nil {
		t.Fatalf("own canary: %v", err)
	}
	if by, err := CanaryMadeBy(canary); err != nil || by != k.Describe() {
		t.Fatalf("CanaryMadeBy = %q, %v", by, err)
	}

	// The canary's wrapped value is not accepted as a wrapped data key.
	if _, w, err := parseCanary(canary); err != nil {
		t.Fatal(err)
	} else if _, err := k.Unwrap(ctx, w); err == nil {
		t.Fatal("the canary unwraps as a data key")
	}

	other := openTestKeyring(t)
	err = other.VerifyCanary(ctx, canary)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: err %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), k.Describe()) || !strings.Contains(err.Error(), other.Describe()) {
		t.Errorf("error does not name both keyrings: %v", err)
	}

	for name, bad := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{9}, canary[1:]...),
		"truncated": canary[:3],
		"tampered":  append(bytes.Clone(canary[:len(canary)-1]), canary[len(canary)-1]^1),
	} {
		err := k.VerifyCanary(ctx, bad)
		if err == nil {
			t.Fatalf("%s canary accepted", name)
		}
		t.Logf("%s: %v", name, err)
	}
}

// A lost key file is replaced by a new key on the next start; the canary catches it.
func TestCanaryCatchesRegeneratedKeyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, err := OpenKeyring(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	canary, err := k1.MakeCanary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k1.Close()
	if err := os.Remove(filepath.Join(dir, KeyFileName)); err != nil {
		t.Fatal(err)
	}
	k2, err := OpenKeyring(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if !k2.Created() {
		t.Fatal("new key file not reported as created")
	}
	err = k2.VerifyCanary(ctx, canary)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("err %v, want ErrWrongKey", err)
	}
	t.Log(err)
}
