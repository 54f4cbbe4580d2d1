package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// KeyFileName is the name of the default key file in the data directory.
const KeyFileName = "gatehouse.key"

// maxKeyFileSize bounds how much of a key file is read; a valid one is 45 bytes.
const maxKeyFileSize = 4096

// openKeyFile opens the default keyring, <dataDir>/gatehouse.key, creating it on first use.
func openKeyFile(dataDir string) (*Keyring, error) {
	if dataDir == "" {
		return nil, errors.New("secrets: no keyring URL and no data directory for the default key file")
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("secrets: resolve data directory: %w", err)
	}
	path := filepath.Join(dir, KeyFileName)
	key, created, err := loadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return newLocalKeyring(key, "file://"+filepath.ToSlash(path), created)
}

// loadOrCreateKeyFile reads the key file at path or, if there is none, creates it with a new
// random key. Creation is atomic: the key is written to a temporary file which is then
// hard-linked into place, so a concurrent reader never sees a partial file and of two
// processes racing to create it, both end up with the winner's key.
func loadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	key, err = readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("secrets: create data directory %s: %w", dir, err)
	}
	key, err = NewDataKey()
	if err != nil {
		return nil, false, err
	}
	content := append(encodeKey(key), '\n')
	defer clear(content)

	tmp, err := os.CreateTemp(dir, ".gatehouse.key.tmp-*") // mode 0600
	if err != nil {
		return nil, false, fmt.Errorf("secrets: create key file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeSync(tmp, content); err != nil {
		return nil, false, fmt.Errorf("secrets: write key file %s: %w", tmpName, err)
	}

	switch err := os.Link(tmpName, path); {
	case err == nil:
		syncDir(dir)
		return key, true, nil
	case errors.Is(err, fs.ErrExist):
		// Another process created it first: use theirs.
		clear(key)
		return readRacedKeyFile(path)
	}

	// Hard links unsupported here: fall back to exclusive create.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		clear(key)
		return readRacedKeyFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("secrets: create key file %s: %w", path, err)
	}
	if err := writeSync(f, content); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("secrets: write key file %s: %w", path, err)
	}
	syncDir(dir)
	return key, true, nil
}

// readRacedKeyFile reads a key file that appeared while this process was creating it.
func readRacedKeyFile(path string) ([]byte, bool, error) {
	key, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("secrets: key file %s exists but cannot be opened (dangling symlink?): %w", path, err)
	}
	return key, false, err
}

// writeSync writes b to f, flushes it to stable storage and closes f.
func writeSync(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a new directory entry durable; best effort (not every OS supports it).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// readKeyFile reads and checks an existing key file. A missing file yields an error wrapping
// fs.ErrNotExist. Errors never contain the file's content.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat() // the opened file, not the path: no check-then-use race
	if err != nil {
		return nil, fmt.Errorf("secrets: stat key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets: key file %s has mode %04o and is accessible to group or others; "+
			"refusing to use it (the key may have leaked: consider rotating it; then run: chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("secrets: read key file %s: %w", path, err)
	}
	defer clear(b)
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("secrets: key file %s is malformed: too large", path)
	}
	key, ok := decodeKey(bytes.TrimSpace(b))
	if !ok {
		return nil, fmt.Errorf("secrets: key file %s is malformed: it must hold one base64-encoded 32-byte key; "+
			"refusing to replace it (restore it from backup)", path)
	}
	return key, nil
}
