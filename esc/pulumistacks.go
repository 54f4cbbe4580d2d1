package esc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	pesc "github.com/pulumi/esc"
	"github.com/pulumi/esc/schema"
)

// The pulumi-stacks provider (fn::open::pulumi-stacks) reads the outputs of stacks of the
// environment's organization:
//
//	stackRefs:
//	  fn::open::pulumi-stacks:
//	    stacks:
//	      vpc: {stack: vpc-infra/dev}
//
// gives stackRefs.vpc.<output> for every output of the stack. What the caller may read is
// not decided here: the evaluation's StackReader (EvalRequest.Stacks) decides it per stack.

// StackReader reads one stack's outputs for the caller of an evaluation. It returns an
// error naming the stack when the caller may not read it (or it does not exist).
type StackReader interface {
	// StackDeployment returns the newest checkpoint of project/stack (an UntypedDeployment
	// document; nil when the stack has none).
	StackDeployment(ctx context.Context, project, stack string) ([]byte, error)
	// DecryptStackSecret decrypts the ciphertext of a secret output of project/stack (as the
	// service secrets manager stored it); an error when the caller may not decrypt.
	DecryptStackSecret(ctx context.Context, project, stack string, ciphertext []byte) ([]byte, error)
}

type stacksKey struct{}

// evalStacks is an evaluation's StackReader and the outputs it read, by stack: a stack
// named by many opens of one evaluation is read (its whole state loaded) once (found in
// review: hundreds of opens of one large stack each loaded and parsed its state).
type evalStacks struct {
	r     StackReader
	mu    sync.Mutex
	cache map[string]stackRead
}

type stackRead struct {
	v    pesc.Value
	size int
	err  error
}

func (es *evalStacks) outputs(ctx context.Context, project, stack string) (pesc.Value, int, error) {
	ref := project + "/" + stack
	es.mu.Lock()
	defer es.mu.Unlock()
	if c, ok := es.cache[ref]; ok {
		return c.v, c.size, c.err
	}
	var c stackRead
	dep, err := es.r.StackDeployment(ctx, project, stack)
	if err != nil {
		c.err = err
	} else {
		decrypt := func(ct []byte) ([]byte, error) { return es.r.DecryptStackSecret(ctx, project, stack, ct) }
		c.v, c.size, c.err = stackOutputs(dep, decrypt)
	}
	if es.cache == nil {
		es.cache = map[string]stackRead{}
	}
	es.cache[ref] = c
	return c.v, c.size, c.err
}

func withStacks(ctx context.Context, r StackReader) context.Context {
	if r == nil {
		return ctx
	}
	return context.WithValue(ctx, stacksKey{}, &evalStacks{r: r})
}

// PulumiStacksProvider is the pulumi-stacks provider.
type PulumiStacksProvider struct{}

// Schema implements pesc.Provider.
func (PulumiStacksProvider) Schema() (inputs, outputs *schema.Schema) {
	stack := schema.Record(schema.BuilderMap{"stack": schema.String()})
	inputs = schema.Record(schema.BuilderMap{"stacks": schema.Object().AdditionalProperties(stack)}).Schema()
	return inputs, schema.Always()
}

// Open implements pesc.Provider.
func (PulumiStacksProvider) Open(ctx context.Context, inputs map[string]pesc.Value, _ pesc.EnvExecContext) (pesc.Value, error) {
	r, _ := ctx.Value(stacksKey{}).(*evalStacks)
	if r == nil {
		return pesc.Value{}, fmt.Errorf("pulumi-stacks: stack outputs cannot be read here")
	}
	stacks, ok := inputs["stacks"].Value.(map[string]pesc.Value)
	if !ok {
		return pesc.Value{}, fmt.Errorf("pulumi-stacks: stacks must be a map of names to {stack: project/stack}")
	}
	names := make([]string, 0, len(stacks))
	for n := range stacks {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string]pesc.Value, len(stacks))
	size := 0
	for _, n := range names {
		ref, _ := stacks[n].Value.(map[string]pesc.Value)["stack"].Value.(string)
		project, stack, ok := strings.Cut(ref, "/")
		if !ok || project == "" || stack == "" || strings.Contains(stack, "/") {
			return pesc.Value{}, fmt.Errorf("pulumi-stacks: %s: stack %q must be project/stack", n, ref)
		}
		v, n2, err := r.outputs(ctx, project, stack)
		if err != nil {
			return pesc.Value{}, fmt.Errorf("pulumi-stacks: stack %q: %w", ref, err)
		}
		// The size bound of an evaluation counts an open's outputs as providerBytes.
		if size += n2; size > MaxStackOutputBytes {
			return pesc.Value{}, fmt.Errorf("pulumi-stacks: stack %q brings the outputs of this fn::open to %d bytes, more than the %d KiB of stack outputs one fn::open reads: read large stacks in an fn::open of their own", ref, size, MaxStackOutputBytes>>10)
		}
		out[n] = v
	}
	return pesc.NewValue(out), nil
}

// secretSig is the signature key of a secret in a deployment (resource.SecretSig).
const secretSig = "4dabf18193072939515e22adb298388d"

// StackOutputs returns the outputs of a deployment's root stack resource
// (pulumi:pulumi:Stack) as a map value. Secret outputs (the deployment's secret envelope,
// whose ciphertext the service secrets manager wrote: base64 of the server's ciphertext of
// the value's JSON) are decrypted with decrypt and come back as ESC secrets.
func StackOutputs(deployment []byte, decrypt func(ciphertext []byte) ([]byte, error)) (pesc.Value, error) {
	v, _, err := stackOutputs(deployment, decrypt)
	return v, err
}

// MaxStackOutputBytes bounds the outputs (as stored, JSON) one fn::open::pulumi-stacks
// reads: an evaluation's size bound (MaxEvalBytes) counts each open as that much.
const MaxStackOutputBytes = providerBytes

// outputValueBytes is what one value of the outputs counts besides its bytes: its trace
// as an evaluation's JSON shows it (some 200 bytes, 350 with a long environment name).
// Found in review: counting the stored bytes only, 200 KB of outputs (100,000 small
// numbers) referenced ten times evaluated to 230 MB of JSON (1.8 GB allocated) from a
// definition of 145 bytes.
const outputValueBytes = nodeBytes / 2

// countValues is the number of values in v (itself included).
func countValues(v pesc.Value) int {
	n := 1
	switch x := v.Value.(type) {
	case []pesc.Value:
		for _, e := range x {
			n += countValues(e)
		}
	case map[string]pesc.Value:
		for _, e := range x {
			n += countValues(e)
		}
	}
	return n
}

// stackOutputs is StackOutputs, and the size of the outputs: the stored bytes, and
// outputValueBytes for every value.
func stackOutputs(deployment []byte, decrypt func(ciphertext []byte) ([]byte, error)) (pesc.Value, int, error) {
	if len(deployment) == 0 {
		return pesc.NewValue(map[string]pesc.Value{}), 0, nil
	}
	var doc struct {
		Deployment struct {
			SecretsProviders *struct {
				Type string `json:"type"`
			} `json:"secrets_providers"`
			Resources []struct {
				Type    string          `json:"type"`
				Parent  string          `json:"parent"`
				Outputs json.RawMessage `json:"outputs"`
			} `json:"resources"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(deployment, &doc); err != nil {
		return pesc.Value{}, 0, fmt.Errorf("unreadable state: %w", err)
	}
	provider := ""
	if sp := doc.Deployment.SecretsProviders; sp != nil {
		provider = sp.Type
	}
	for _, r := range doc.Deployment.Resources {
		if r.Type != "pulumi:pulumi:Stack" || r.Parent != "" {
			continue
		}
		if len(r.Outputs) == 0 {
			break
		}
		if len(r.Outputs) > MaxStackOutputBytes {
			return pesc.Value{}, len(r.Outputs), fmt.Errorf("its outputs are %d bytes, more than the %d KiB of stack outputs one fn::open reads", len(r.Outputs), MaxStackOutputBytes>>10)
		}
		dec := json.NewDecoder(bytes.NewReader(r.Outputs))
		dec.UseNumber()
		var outputs map[string]any
		if err := dec.Decode(&outputs); err != nil {
			return pesc.Value{}, 0, fmt.Errorf("unreadable stack outputs: %w", err)
		}
		v, err := toValue("", outputs, func(path string, ct string) (pesc.Value, error) {
			if provider != "" && provider != "service" {
				return pesc.Value{}, fmt.Errorf("secret output %s is encrypted by the stack's own secrets provider (%s), which this server cannot decrypt", path, provider)
			}
			raw, err := base64.StdEncoding.DecodeString(ct)
			if err != nil {
				return pesc.Value{}, fmt.Errorf("secret output %s: invalid ciphertext", path)
			}
			pt, err := decrypt(raw)
			if err != nil {
				return pesc.Value{}, fmt.Errorf("secret output %s: %w", path, err)
			}
			d := json.NewDecoder(bytes.NewReader(pt))
			d.UseNumber()
			var plain any
			if err := d.Decode(&plain); err != nil {
				return pesc.Value{}, fmt.Errorf("secret output %s: invalid plaintext", path)
			}
			v, err := toValue(path, plain, nil)
			if err != nil {
				return pesc.Value{}, err
			}
			return v.MakeSecret(), nil
		})
		if err != nil {
			return pesc.Value{}, len(r.Outputs), err
		}
		// Every value costs its trace besides its bytes once evaluated: count it, or a
		// list of small numbers (2 bytes each) becomes a hundred times its size.
		size := len(r.Outputs) + countValues(v)*outputValueBytes
		if size > MaxStackOutputBytes {
			return pesc.Value{}, size, fmt.Errorf("its outputs are %d bytes, more than the %d KiB of stack outputs one fn::open reads (every value, with its trace, counts %d bytes besides its own)", size, MaxStackOutputBytes>>10, outputValueBytes)
		}
		return v, size, nil
	}
	return pesc.NewValue(map[string]pesc.Value{}), 0, nil
}

// toValue converts a deployment property value to an ESC value; secret envelopes are
// given to secret (nil: a secret inside a secret's plaintext is an error).
func toValue(path string, v any, secret func(path, ciphertext string) (pesc.Value, error)) (pesc.Value, error) {
	switch v := v.(type) {
	case map[string]any:
		if sig, ok := v[secretSig].(string); ok {
			if sig != "1b47061264138c4ac30d75fd1eb44270" || secret == nil {
				return pesc.Value{}, fmt.Errorf("output %s: unsupported value", path)
			}
			if pt, ok := v["plaintext"].(string); ok { // a secret kept in the clear (not encrypted)
				return secretPlain(path, pt)
			}
			ct, _ := v["ciphertext"].(string)
			return secret(path, ct)
		}
		m := make(map[string]pesc.Value, len(v))
		for k, e := range v {
			ev, err := toValue(joinPath(path, k), e, secret)
			if err != nil {
				return pesc.Value{}, err
			}
			m[k] = ev
		}
		return pesc.NewValue(m), nil
	case []any:
		l := make([]pesc.Value, len(v))
		for i, e := range v {
			ev, err := toValue(fmt.Sprintf("%s[%d]", path, i), e, secret)
			if err != nil {
				return pesc.Value{}, err
			}
			l[i] = ev
		}
		return pesc.NewValue(l), nil
	}
	return pesc.FromJSON(v)
}

func secretPlain(path, pt string) (pesc.Value, error) {
	d := json.NewDecoder(strings.NewReader(pt))
	d.UseNumber()
	var plain any
	if err := d.Decode(&plain); err != nil {
		return pesc.Value{}, fmt.Errorf("secret output %s: invalid plaintext", path)
	}
	v, err := toValue(path, plain, nil)
	if err != nil {
		return pesc.Value{}, err
	}
	return v.MakeSecret(), nil
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
