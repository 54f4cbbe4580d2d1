package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// newHealthcheckCmd is the container image's HEALTHCHECK (the image has no curl): GET
// /healthz, exit 0 on 200. It sends no credentials, so on a loopback address it accepts any
// certificate (the server's names the public host, not 127.0.0.1).
func newHealthcheckCmd() *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use: "healthcheck", Short: "Exit 0 if the server answers GET /healthz with 200 (for container health checks)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return fmt.Errorf("--url must be an http:// or https:// URL")
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			if isLoopbackHost(u.Hostname()) {
				tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // no credentials are sent
			}
			c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
			resp, err := c.Get(target)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", target, resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", envDefault("GATEHOUSE_HEALTHCHECK_URL", "http://127.0.0.1:8080/healthz"), "the health endpoint (env GATEHOUSE_HEALTHCHECK_URL)")
	return cmd
}
