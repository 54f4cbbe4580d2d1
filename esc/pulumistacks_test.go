package esc_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/esc"
)

func TestEnvStackOutputs(t *testing.T) {
	ct := base64.StdEncoding.EncodeToString([]byte("CT"))
	dep := `{"version":3,"deployment":{"secrets_providers":{"type":"service"},"resources":[
	 {"type":"pulumi:pulumi:Stack","outputs":{"n":1,"nested":{"s":{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","ciphertext":"` + ct + `"}},
	  "p":{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","plaintext":"[1,2]"}}},
	 {"type":"aws:s3:Bucket","outputs":{"bucket":"x"}}]}}`
	decrypt := func(b []byte) ([]byte, error) {
		if string(b) != "CT" {
			return nil, errors.New("bad ciphertext")
		}
		return []byte(`{"k":"v"}`), nil
	}
	v, err := esc.StackOutputs([]byte(dep), decrypt)
	if err != nil {
		t.Fatal(err)
	}
	got := v.ToJSON(false).(map[string]any)
	if s := got["nested"].(map[string]any)["s"].(map[string]any)["k"]; s != "v" {
		t.Fatalf("decrypted secret: %v", got)
	}
	if red := v.ToJSON(true).(map[string]any); red["nested"].(map[string]any)["s"] != "[secret]" || red["p"] != "[secret]" || red["bucket"] != nil {
		t.Fatalf("secrets are not ESC secrets or a child resource leaked in: %v", red)
	}
	// A refused decrypt is an error naming the output; a stack with its own secrets
	// provider cannot be decrypted here.
	_, err = esc.StackOutputs([]byte(dep), func([]byte) ([]byte, error) { return nil, errors.New("stack:decrypt denied") })
	if err == nil || !strings.Contains(err.Error(), "nested.s") || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("refused decrypt: %v", err)
	}
	_, err = esc.StackOutputs([]byte(strings.Replace(dep, `"service"`, `"passphrase"`, 1)), decrypt)
	if err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("passphrase stack: %v", err)
	}
	if v, err := esc.StackOutputs(nil, decrypt); err != nil || len(v.ToJSON(false).(map[string]any)) != 0 {
		t.Fatalf("a stack without state: %v %v", v, err)
	}
}
