package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// optBool is a boolean flag that takes its value as a separate word or after "="
// (--members-can-create-stacks false) and accepts only true or false: any other word is an
// error, never a silent false. set says whether it was given.
type optBool struct {
	value, set bool
}

func (b *optBool) String() string {
	if !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

func (b *optBool) Set(s string) error {
	switch strings.ToLower(s) {
	case "true":
		b.value, b.set = true, true
	case "false":
		b.value, b.set = false, true
	default:
		return fmt.Errorf("must be true or false, not %q", s)
	}
	return nil
}

func (b *optBool) Type() string { return "true|false" }

// envAnnotation names the environment variable of a flag whose value is parsed by the flag
// itself (numbers, durations, booleans): applyEnv sets it from the environment before the
// command runs, so that an invalid value is an error naming the variable instead of being
// silently ignored.
const envAnnotation = "gatehouse_env"

// bindEnv attaches the environment variable env to the flag name of fs.
func bindEnv(fs *pflag.FlagSet, name, env string) {
	if err := fs.SetAnnotation(name, envAnnotation, []string{env}); err != nil {
		panic(err)
	}
	f := fs.Lookup(name)
	if !strings.Contains(f.Usage, env) {
		f.Usage += " (env " + env + ")"
	}
}

// applyEnv sets every flag of cmd bound with bindEnv and not given on the command line
// from its environment variable; a value the flag does not accept is an error.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		envs := f.Annotations[envAnnotation]
		if err != nil || len(envs) == 0 || f.Changed {
			return
		}
		v, ok := os.LookupEnv(envs[0])
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("invalid %s=%q (for --%s): %v", envs[0], v, f.Name, serr)
		}
	})
	return err
}

// isLoopbackHost says whether host (a name or an address, without port) is this machine.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverURL checks and completes the --server value: a bare host:port on a loopback
// address means http://; elsewhere the scheme must be given (https:// in production).
func serverURL(s string) (string, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	if s == "" {
		return "", fmt.Errorf("no server: pass --server or set GATEHOUSE_SERVER")
	}
	if !strings.Contains(s, "://") {
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if !isLoopbackHost(host) {
			return "", fmt.Errorf("--server %q has no scheme: write https://%s (or http:// to send tokens unencrypted)", s, s)
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("--server %q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("--server %q: the scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("--server %q names no host", s)
	}
	return s, nil
}
