package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gcsecrets "gocloud.dev/secrets"
)

// fakeVault is a minimal Vault transit engine on loopback. The hashivault driver reads
// VAULT_SERVER_URL once per process, so one server serves every test (and -count=N).
var fakeVault = sync.OnceValue(func() string {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/v1/transit/encrypt/{key}", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Plaintext string }
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			reply(w, 400, map[string]any{"errors": []string{"bad request"}})
			return
		}
		// Not encryption, just enough to tell keys apart.
		ct := "vault:v1:" + base64.StdEncoding.EncodeToString([]byte(r.PathValue("key")+"|"+req.Plaintext))
		reply(w, 200, map[string]any{"data": map[string]any{"ciphertext": ct}})
	})
	mux.HandleFunc("/v1/transit/decrypt/{key}", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Ciphertext string }
		json.NewDecoder(r.Body).Decode(&req)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(req.Ciphertext, "vault:v1:"))
		key, pt, ok := strings.Cut(string(raw), "|")
		if err != nil || !ok || key != r.PathValue("key") {
			reply(w, 400, map[string]any{"errors": []string{"cipher: message authentication failed"}})
			return
		}
		reply(w, 200, map[string]any{"data": map[string]any{"plaintext": pt}})
	})
	srv := httptest.NewServer(mux) // 127.0.0.1; lives until the test binary exits
	os.Setenv("VAULT_SERVER_URL", srv.URL)
	os.Setenv("VAULT_ADDR", srv.URL)
	os.Setenv("VAULT_SERVER_TOKEN", "test-token")
	return srv.URL
})

// setCloudTestEnv keeps the cloud SDKs off the network (no instance metadata lookups) and
// gives them dummy credentials.
func setCloudTestEnv(t *testing.T) {
	fakeVault()
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	gcred := filepath.Join(t.TempDir(), "gcp.json")
	os.WriteFile(gcred, []byte(`{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}`), 0o600)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", gcred)
	t.Setenv("NO_GCE_CHECK", "true")
	t.Setenv("AZURE_CLIENT_ID", "")
	t.Setenv("AZURE_TENANT_ID", "")
}

func TestCloudSchemesRegistered(t *testing.T) {
	setCloudTestEnv(t)
	urls := map[string]string{
		"awskms":        "awskms://alias/gatehouse-test?region=us-east-1",
		"gcpkms":        "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
		"azurekeyvault": "azurekeyvault://gatehouse-test.vault.azure.net/keys/k",
		"hashivault":    "hashivault://gatehouse-test",
	}
	for _, scheme := range cloudSchemes {
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if !gcsecrets.DefaultURLMux().ValidKeeperScheme(scheme) {
				t.Fatalf("scheme %q not registered", scheme)
			}
			k, err := OpenKeyring(ctx, urls[scheme], "")
			if err != nil && (strings.Contains(err.Error(), "no driver registered") || errors.Is(err, ErrUnsupportedScheme)) {
				t.Fatalf("driver not registered: %v", err)
			}
			if err != nil {
				t.Logf("open failed after dispatch to the driver (acceptable: no credentials/network): %v", err)
				return
			}
			t.Logf("opened %s", k.Describe())
			k.Close()
		})
	}
}

func TestHashiVaultKeyring(t *testing.T) {
	fakeVault()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := OpenKeyring(ctx, "hashivault://gatehouse-a?engine=transit", "")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if d := k.Describe(); d != "hashivault://gatehouse-a?engine=transit" {
		t.Errorf("Describe() = %q", d)
	}
	dek := mustKey(t)
	w, err := k.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Unwrap(ctx, w)
	if err != nil || string(got) != string(dek) {
		t.Fatalf("unwrap: %v", err)
	}
	canary, err := k.MakeCanary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyCanary(ctx, canary); err != nil {
		t.Fatal(err)
	}

	other, err := OpenKeyring(ctx, "hashivault://gatehouse-b", "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = other.VerifyCanary(ctx, canary)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other Vault key: err %v, want ErrWrongKey", err)
	}
	t.Log(err)
	if strings.Contains(err.Error(), "test-token") {
		t.Fatal("error leaks the Vault token")
	}
}

// fakeKMS is a minimal AWS KMS (JSON 1.1 protocol) on loopback. Like real KMS, a
// ciphertext names its key, and Decrypt does not need (and gocloud does not send) a key ID.
func fakeKMS(t *testing.T) string {
	keys := map[string]bool{"alias/a": true, "alias/b": true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			KeyId                     string
			Plaintext, CiphertextBlob []byte
		}
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fail := func(typ string) {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]any{"__type": typ, "message": "fake"})
		}
		switch r.Header.Get("X-Amz-Target") {
		case "TrentService.Encrypt":
			if !keys[req.KeyId] {
				fail("NotFoundException")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"KeyId": req.KeyId, "CiphertextBlob": append([]byte(req.KeyId+"|"), req.Plaintext...)})
		case "TrentService.Decrypt":
			key, pt, ok := strings.Cut(string(req.CiphertextBlob), "|")
			if !ok || !keys[key] {
				fail("InvalidCiphertextException")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"KeyId": key, "Plaintext": []byte(pt)})
		default:
			fail("UnknownOperationException")
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAWSKMSKeyring(t *testing.T) {
	setCloudTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	endpoint := neturl.QueryEscape(fakeKMS(t))
	open := func(key string) *Keyring {
		k, err := OpenKeyring(ctx, "awskms://"+key+"?region=us-east-1&endpoint="+endpoint, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}
	a, b := open("alias/a"), open("alias/b")
	dek := mustKey(t)
	w, err := a.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Unwrap(ctx, w); err != nil || string(got) != string(dek) {
		t.Fatalf("unwrap: %v", err)
	}
	canary, err := a.MakeCanary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.VerifyCanary(ctx, canary); err != nil {
		t.Fatal(err)
	}
	// AWS KMS ciphertexts carry their key: a keyring naming another key in the same
	// account still unwraps (the data stays readable). CanaryMadeBy tells them apart.
	if err := b.VerifyCanary(ctx, canary); err != nil {
		t.Fatalf("same account, other key: %v", err)
	}
	if by, _ := CanaryMadeBy(canary); by == b.Describe() {
		t.Fatal("CanaryMadeBy does not name the original key")
	}
	// A ciphertext KMS rejects (another account's key, or corrupt) is a wrong key.
	bad := bytes.Replace(canary, []byte("alias/a|"), []byte("alias/x|"), 1)
	err = a.VerifyCanary(ctx, bad)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("rejected ciphertext: err %v, want ErrWrongKey", err)
	}
	t.Log(err)
	// A key that does not exist fails at Wrap with a clear error.
	if _, err := open("alias/missing").Wrap(ctx, dek); err == nil {
		t.Fatal("wrapped with a missing key")
	}
}
