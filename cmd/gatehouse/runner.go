package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-dev/gatehouse/deploy"
)

// deployFlags are serve's Deployments flags.
type deployFlags struct {
	lease, sweep             time.Duration
	prComments               bool
	ghSecret, ghAPI, ghToken string
	glSecret, glAPI, glToken string
}

func (f *deployFlags) add(fs *pflag.FlagSet) {
	fs.DurationVar(&f.lease, "deploy-runner-lease", time.Minute, "how long a deployment runner's lease lasts without a heartbeat: a runner silent this long loses its run, which fails")
	bindEnv(fs, "deploy-runner-lease", "GATEHOUSE_DEPLOY_RUNNER_LEASE")
	fs.DurationVar(&f.sweep, "deploy-sweep-interval", 10*time.Second, "how often the server fails the runs whose runner's lease ran out (a dead runner's run ends at most this long after its lease)")
	bindEnv(fs, "deploy-sweep-interval", "GATEHOUSE_DEPLOY_SWEEP_INTERVAL")
	fs.BoolVar(&f.prComments, "deploy-pr-comments", true, "comment each pull/merge request run's result on the pull/merge request (edited in place by later runs), besides the commit status")
	bindEnv(fs, "deploy-pr-comments", "GATEHOUSE_DEPLOY_PR_COMMENTS")
	envSecretVar(fs, &f.ghSecret, "github-webhook-secret", "GATEHOUSE_GITHUB_WEBHOOK_SECRET", "", "the server-wide secret GitHub signs deployment webhooks with (X-Hub-Signature-256) at /api/deployments/webhooks/github; it trusts every holder with every organization that has no secret of its own (multi-organization servers: per-organization secrets, PUT /api/orgs/{org}/deployments/webhooks/github); unset: that URL refuses deliveries (env GATEHOUSE_GITHUB_WEBHOOK_SECRET)")
	fs.StringVar(&f.ghAPI, "github-api-url", envDefault("GATEHOUSE_GITHUB_API_URL", "https://api.github.com"), "GitHub's API (GitHub Enterprise: https://HOST/api/v3), for commit statuses and pull request comments (env GATEHOUSE_GITHUB_API_URL)")
	envSecretVar(fs, &f.ghToken, "github-token", "GATEHOUSE_GITHUB_TOKEN", "", "token that posts deployments' commit statuses (repo:status) and pull request comments (pull requests: write) to GitHub (env GATEHOUSE_GITHUB_TOKEN)")
	envSecretVar(fs, &f.glSecret, "gitlab-webhook-token", "GATEHOUSE_GITLAB_WEBHOOK_TOKEN", "", "the server-wide secret token of GitLab deployment webhooks (X-Gitlab-Token) at /api/deployments/webhooks/gitlab; it trusts every holder with every organization that has no secret of its own (multi-organization servers: per-organization tokens, PUT /api/orgs/{org}/deployments/webhooks/gitlab); unset: that URL refuses deliveries (env GATEHOUSE_GITLAB_WEBHOOK_TOKEN)")
	fs.StringVar(&f.glAPI, "gitlab-api-url", envDefault("GATEHOUSE_GITLAB_API_URL", "https://gitlab.com/api/v4"), "GitLab's API (self-managed: https://HOST/api/v4), for commit statuses and merge request comments (env GATEHOUSE_GITLAB_API_URL)")
	envSecretVar(fs, &f.glToken, "gitlab-token", "GATEHOUSE_GITLAB_TOKEN", "", "token that posts deployments' commit statuses and merge request comments to GitLab (api scope) (env GATEHOUSE_GITLAB_TOKEN)")
}

// options are the Deployments options; publicURL is serve's --public-url (deployments'
// console URLs; default: the request's host).
func (f *deployFlags) options(publicURL string) deploy.Options {
	prComments := f.prComments
	return deploy.Options{ConsoleURL: publicURL, LeaseDuration: f.lease, SweepInterval: f.sweep, PRComments: &prComments,
		GitHub: deploy.VCS{WebhookSecret: f.ghSecret, APIURL: f.ghAPI, Token: f.ghToken},
		GitLab: deploy.VCS{WebhookSecret: f.glSecret, APIURL: f.glAPI, Token: f.glToken}}
}

func newRunnerCmd() *cobra.Command {
	var cfg deploy.RunnerConfig
	var server string
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Run deployments: lease queued runs of a runner pool and execute them",
		Long: `runner leases the queued deployments of its pool from the server and runs them: it
checks the source out with git, runs the settings' pre-run commands and the pulumi operation
in a fresh directory with a clean environment (the settings' variables and the run's own
short-lived credential), and streams the output back. The pool's token comes from
GATEHOUSE_RUNNER_TOKEN (POST /api/orgs/{org}/agent-pools creates a pool and its token).
The host's pulumi CLI is used (checked with pulumi version on start).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := serverURL(server)
			if err != nil {
				return err
			}
			cfg.Server = u
			log, err := newLogger("text", "info", cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.Log = log
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := deploy.NewRunner(ctx, cfg)
			if err != nil {
				return err
			}
			return r.Run(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&server, "server", envDefault("GATEHOUSE_SERVER", ""), "the Gatehouse server's URL (env GATEHOUSE_SERVER)")
	fs.StringVar(&cfg.Pool, "pool", envDefault("GATEHOUSE_RUNNER_POOL", ""), "the runner pool's name (checked against the token's pool) (env GATEHOUSE_RUNNER_POOL)")
	envSecretVar(fs, &cfg.Token, "token", "GATEHOUSE_RUNNER_TOKEN", "", "the runner pool's token (prefer the environment: env GATEHOUSE_RUNNER_TOKEN)")
	fs.StringVar(&cfg.Name, "name", envDefault("GATEHOUSE_RUNNER_NAME", ""), "this runner's name in the audit log (default: the host name) (env GATEHOUSE_RUNNER_NAME)")
	fs.StringVar(&cfg.Pulumi, "pulumi", envDefault("GATEHOUSE_RUNNER_PULUMI", "pulumi"), "the pulumi CLI to run (env GATEHOUSE_RUNNER_PULUMI)")
	fs.StringVar(&cfg.Git, "git", envDefault("GATEHOUSE_RUNNER_GIT", "git"), "the git binary (env GATEHOUSE_RUNNER_GIT)")
	fs.StringVar(&cfg.WorkDir, "work-dir", envDefault("GATEHOUSE_RUNNER_WORK_DIR", ""), "where each run gets a fresh directory, removed after it (default: the temp dir) (env GATEHOUSE_RUNNER_WORK_DIR)")
	fs.StringVar(&cfg.PulumiHome, "pulumi-home", envDefault("GATEHOUSE_RUNNER_PULUMI_HOME", ""), "a PULUMI_HOME shared by runs (a plugin cache); default: a fresh one per run (env GATEHOUSE_RUNNER_PULUMI_HOME)")
	fs.StringVar(&cfg.Container, "container", envDefault("GATEHOUSE_RUNNER_CONTAINER", ""), "container engine for runs whose settings name an executor image: docker, podman (a name or path), none (default: the first whose info answers on start) (env GATEHOUSE_RUNNER_CONTAINER)")
	fs.StringVar(&cfg.GitCAFile, "git-ca-file", envDefault("GATEHOUSE_RUNNER_GIT_CA_FILE", ""), "a PEM file of the certificate authorities trusted for HTTPS git repositories (a private CA); default: the system's (env GATEHOUSE_RUNNER_GIT_CA_FILE)")
	fs.StringVar(&cfg.SSHKnownHosts, "ssh-known-hosts", envDefault("GATEHOUSE_RUNNER_SSH_KNOWN_HOSTS", ""), "an OpenSSH known_hosts file pinning the host keys of SSH git servers (others are refused); default: a server's key is accepted as first seen (env GATEHOUSE_RUNNER_SSH_KNOWN_HOSTS)")
	fs.StringVar(&cfg.RunUIDs, "run-uids", envDefault("GATEHOUSE_RUNNER_RUN_UIDS", ""), "isolate runs (Linux, runner as root): FIRST-LAST, a range of uids used by nothing else; each run's commands run under a uid (and gid) of its own, in a directory only it reads, and every process it leaves is killed when it ends; several runners on a host need disjoint ranges; not with --pulumi-home (env GATEHOUSE_RUNNER_RUN_UIDS)")
	fs.DurationVar(&cfg.Poll, "poll", 5*time.Second, "wait between polls when nothing is queued")
	bindEnv(fs, "poll", "GATEHOUSE_RUNNER_POLL")
	return cmd
}
