package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// The administration commands call the server's REST API with a token (--server, --token).

// orgFlag registers the persistent --org flag (env GATEHOUSE_ORG) on cmd and returns a
// function giving "/api/orgs/<org>", or an error when no organization is set.
// orgFlag registers --org on cmd and returns a call of c on a path under that organization
// (/api/orgs/ORG + suffix), refused without --org.
func orgFlag(cmd *cobra.Command, c *apiClient) func(cmd *cobra.Command, method, suffix string, body, out any) error {
	var org string
	cmd.PersistentFlags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "organization (env GATEHOUSE_ORG)")
	return func(cmd *cobra.Command, method, suffix string, body, out any) error {
		if org == "" {
			return fmt.Errorf("--org is required")
		}
		return c.do(cmd, method, "/api/orgs/"+org+suffix, body, out)
	}
}

// done reports a change that the API answers without a body: a sentence in table mode,
// with --json the object that changed (API names).
func (c *apiClient) done(cmd *cobra.Command, obj map[string]any, format string, args ...any) error {
	if c.json {
		return printJSON(cmd.OutOrStdout(), obj)
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
	return err
}

func newOrgCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "org", Short: "Organizations and their settings"}
	c := addClientFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use: "create NAME", Short: "Create an organization (site administrators); you become its first admin", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out map[string]any
			if err := c.do(cmd, "POST", "/api/orgs", map[string]string{"name": args[0]}, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) { fmt.Fprintf(w, "created organization %s\n", args[0]) })
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "ls", Short: "List the organizations you belong to, with your role", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Organizations []struct {
					Name string `json:"name"`
					Role string `json:"role,omitempty"`
				} `json:"organizations"`
			}
			if err := c.do(cmd, "GET", "/api/user", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ORGANIZATION\tYOUR ROLE")
				for _, o := range out.Organizations {
					fmt.Fprintf(w, "%s\t%s\n", o.Name, o.Role)
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "show ORG", Short: "Show an organization's settings", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out orgOut
			if err := c.do(cmd, "GET", "/api/orgs/"+args[0], nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, out.table)
		},
	})
	var defPerm, defEnvPerm string
	var canCreate, canDelete optBool
	var maxDays int
	set := &cobra.Command{
		Use: "set ORG", Short: "Change organization settings", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if defPerm != "" {
				body["setDefaultStackPermission"] = defPerm
			}
			if canCreate.set {
				body["setMembersCanCreateStacks"] = canCreate.value
			}
			if canDelete.set {
				body["setMembersCanDeleteStacks"] = canDelete.value
			}
			if cmd.Flags().Changed("max-token-days") {
				body["setMaxAccessTokenExpiryDays"] = maxDays
			}
			if defEnvPerm != "" {
				body["setDefaultEnvironmentPermission"] = defEnvPerm
			}
			if len(body) == 0 {
				return fmt.Errorf("nothing to change: pass --default-stack-permission, --default-environment-permission, --members-can-create-stacks, --members-can-delete-stacks or --max-token-days")
			}
			var out orgOut
			if err := c.do(cmd, "PATCH", "/api/orgs/"+args[0], body, &out); err != nil {
				return err
			}
			return c.print(cmd, out, out.table)
		},
	}
	set.Flags().StringVar(&defPerm, "default-stack-permission", "", "what every member may do on every stack: none, read, write or admin")
	set.Flags().Var(&canCreate, "members-can-create-stacks", "true or false")
	set.Flags().Var(&canDelete, "members-can-delete-stacks", "true or false (stack admins may delete their stacks)")
	set.Flags().IntVar(&maxDays, "max-token-days", 0, "maximum token lifetime in days (0: no limit)")
	set.Flags().StringVar(&defEnvPerm, "default-environment-permission", "", "what every member may do on every environment: none, read, open, write or admin")
	cmd.AddCommand(set)
	return cmd
}

type orgOut struct {
	Name                     string `json:"name"`
	DefaultStackPermission   int    `json:"defaultStackPermission"`
	MembersCanCreateStacks   bool   `json:"membersCanCreateStacks"`
	MembersCanDeleteStacks   bool   `json:"membersCanDeleteStacks"`
	MaxAccessTokenExpiryDays int    `json:"maxAccessTokenExpiryDays"`
	UserRole                 string `json:"userRole"`
	DefaultEnvPermission     string `json:"defaultEnvironmentPermission"`
}

var permNames = map[int]string{0: "none", 101: "read", 102: "write", 103: "admin", 104: "admin"}

// MarshalJSON prints the default stack permission as its word (the API's number is
// Pulumi's wire encoding, not something to put in a script).
func (o orgOut) MarshalJSON() ([]byte, error) {
	type plain orgOut
	return json.Marshal(struct {
		plain
		DefaultStackPermission string `json:"defaultStackPermission"`
	}{plain(o), permNames[o.DefaultStackPermission]})
}

func (o orgOut) table(w *tabwriter.Writer) {
	fmt.Fprintf(w, "organization\t%s\n", o.Name)
	fmt.Fprintf(w, "default stack permission\t%s\n", permNames[o.DefaultStackPermission])
	if o.DefaultEnvPermission != "" {
		fmt.Fprintf(w, "default environment permission\t%s\n", o.DefaultEnvPermission)
	}
	fmt.Fprintf(w, "members can create stacks\t%v\n", o.MembersCanCreateStacks)
	fmt.Fprintf(w, "members can delete stacks\t%v\n", o.MembersCanDeleteStacks)
	days := "no limit"
	if o.MaxAccessTokenExpiryDays > 0 {
		days = fmt.Sprintf("%d days", o.MaxAccessTokenExpiryDays)
	}
	fmt.Fprintf(w, "max token lifetime\t%s\n", days)
	if o.UserRole != "" {
		fmt.Fprintf(w, "your role\t%s\n", o.UserRole)
	}
}

func newMemberCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Organization members"}
	c := addClientFlags(cmd)
	orgDo := orgFlag(cmd, c)
	cmd.AddCommand(&cobra.Command{
		Use: "ls", Short: "List members", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Members []struct {
					Role string `json:"role"`
					User struct {
						Name  string `json:"name"`
						Email string `json:"email"`
					} `json:"user"`
				} `json:"members"`
			}
			if err := orgDo(cmd, "GET", "/members", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "USER\tROLE\tEMAIL")
				for _, m := range out.Members {
					fmt.Fprintf(w, "%s\t%s\t%s\n", m.User.Name, m.Role, m.User.Email)
				}
			})
		},
	})
	var role string
	add := &cobra.Command{
		Use: "add USER", Short: "Add an existing user to the organization (one it created, or as a site admin; others: gatehouse invite create)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "POST", "/members/"+args[0], map[string]string{"role": role}, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"user": args[0], "role": role}, "added %s as %s", args[0], role)
		},
	}
	add.Flags().StringVar(&role, "role", "member", "admin, member or billing-manager")
	setRole := &cobra.Command{
		Use: "set-role USER ROLE", Short: "Change a member's role", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "PATCH", "/members/"+args[0], map[string]string{"role": args[1]}, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"user": args[0], "role": args[1]}, "%s is now %s", args[0], args[1])
		},
	}
	rm := &cobra.Command{
		Use: "rm USER", Short: "Remove a member (and from the organization's teams)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "DELETE", "/members/"+args[0], nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"user": args[0], "removed": true}, "removed %s from the organization (and its teams)", args[0])
		},
	}
	cmd.AddCommand(add, setRole, rm)
	return cmd
}

func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "User accounts"}
	c := addClientFlags(cmd)
	var org, role, email string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user in an organization and print their first personal access token",
		Long:  "create makes a user account, adds it to --org with --role and prints its first personal access token on stdout, alone on one line (shown once).",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if org == "" {
				return fmt.Errorf("--org is required")
			}
			var out struct {
				TokenValue string `json:"tokenValue"`
			}
			var raw json.RawMessage
			if err := c.do(cmd, "POST", "/api/orgs/"+org+"/users", map[string]string{"name": args[0], "role": role, "email": email}, &raw); err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if c.json {
				fmt.Fprintln(cmd.OutOrStdout(), string(raw))
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.TokenValue)
			return nil
		},
	}
	create.Flags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "organization to add the user to")
	create.Flags().StringVar(&role, "role", "member", "admin, member or billing-manager")
	create.Flags().StringVar(&email, "email", "", "email address")
	type siteUser struct {
		Name          string `json:"name"`
		Email         string `json:"email,omitempty"`
		SiteAdmin     bool   `json:"siteAdmin"`
		Created       string `json:"created"`
		Disabled      string `json:"disabled,omitempty"`
		RevokedTokens *int   `json:"revokedTokens,omitempty"`
	}
	ls := &cobra.Command{
		Use: "ls", Short: "List every user of the site (site administrators)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Users []siteUser `json:"users"`
			}
			if err := c.do(cmd, "GET", "/api/admin/users", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "USER\tEMAIL\tSITE ADMIN\tSTATUS")
				for _, u := range out.Users {
					status := "active"
					if u.Disabled != "" {
						status = "disabled " + u.Disabled
					}
					fmt.Fprintf(w, "%s\t%s\t%v\t%s\n", u.Name, u.Email, u.SiteAdmin, status)
				}
			})
		},
	}
	disable := &cobra.Command{
		Use: "disable NAME", Short: "Disable a user at once: every personal token ends and they cannot authenticate (site administrators)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out siteUser
			if err := c.do(cmd, "POST", "/api/admin/users/"+url.PathEscape(args[0])+"/disable", nil, &out); err != nil {
				return err
			}
			n := 0
			if out.RevokedTokens != nil {
				n = *out.RevokedTokens
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "disabled %s (since %s); revoked %d personal tokens\n", out.Name, out.Disabled, n)
			})
		},
	}
	cmd.AddCommand(create, ls, disable)
	return cmd
}

func newTeamCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "team", Short: "Teams and their members"}
	c := addClientFlags(cmd)
	orgDo := orgFlag(cmd, c)
	cmd.AddCommand(&cobra.Command{
		Use: "ls", Short: "List teams", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Teams []struct {
					Name        string `json:"name"`
					DisplayName string `json:"displayName"`
					Description string `json:"description"`
				} `json:"teams"`
			}
			if err := orgDo(cmd, "GET", "/teams", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "TEAM\tDISPLAY NAME\tDESCRIPTION")
				for _, t := range out.Teams {
					fmt.Fprintf(w, "%s\t%s\t%s\n", t.Name, t.DisplayName, t.Description)
				}
			})
		},
	})
	var desc string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a team", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out json.RawMessage
			if err := orgDo(cmd, "POST", "/teams/pulumi", map[string]string{"name": args[0], "description": desc}, &out); err != nil {
				return err
			}
			if c.json && len(out) > 0 {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), string(out))
				return err
			}
			return c.done(cmd, map[string]any{"name": args[0], "description": desc}, "created team %s", args[0])
		},
	}
	create.Flags().StringVar(&desc, "description", "", "what the team is for")
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a team's members and grants", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Name    string `json:"name"`
				Members []struct {
					Name string `json:"name"`
					Role string `json:"role"`
				} `json:"members"`
				Grants       []grantOut    `json:"grants"`
				Environments []envGrantOut `json:"environments"`
			}
			if err := orgDo(cmd, "GET", "/teams/"+args[0], nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "team %s\n\nMEMBER\tROLE\n", out.Name)
				for _, m := range out.Members {
					fmt.Fprintf(w, "%s\t%s\n", m.Name, m.Role)
				}
				fmt.Fprintln(w, "\nGRANT ON\tPERMISSION\tDECRYPT")
				for _, g := range out.Grants {
					fmt.Fprintf(w, "%s\t%s\t%v\n", g.scope(), g.Permission, g.Decrypt)
				}
				for _, g := range out.Environments {
					// Environment permissions: open is what decrypts.
					fmt.Fprintf(w, "%s\t%s\t%v\n", g.scope(), g.Permission, g.Permission != "read")
				}
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a team (its grants go with it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "DELETE", "/teams/"+args[0], nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"name": args[0], "deleted": true}, "deleted team %s and its grants", args[0])
		},
	}
	memberAction := func(use, short, action string) *cobra.Command {
		return &cobra.Command{
			Use: use + " TEAM USER", Short: short, Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := orgDo(cmd, "PATCH", "/teams/"+args[0], map[string]string{"memberAction": action, "member": args[1]}, nil); err != nil {
					return err
				}
				verb := map[string]string{"add": "added %s to team %s", "remove": "removed %s from team %s"}[action]
				return c.done(cmd, map[string]any{"team": args[0], "member": args[1], "memberAction": action}, verb, args[1], args[0])
			},
		}
	}
	cmd.AddCommand(create, show, rm,
		memberAction("add-member", "Add an organization member to a team", "add"),
		memberAction("rm-member", "Remove a member from a team", "remove"))
	return cmd
}

type grantOut struct {
	Stack      string `json:"stack,omitempty"`
	Project    string `json:"project,omitempty"`
	Tag        string `json:"tag,omitempty"`
	Env        string `json:"env,omitempty"`        // protection rules: one environment, project/name
	EnvProject string `json:"envProject,omitempty"` // protection rules: every environment of an ESC project
	Permission string `json:"permission,omitempty"`
	Decrypt    bool   `json:"decrypt"`
}

// envGrantOut is a team's environment permission as the team API lists it (Pulumi's
// shape; no envName: every environment of the project).
type envGrantOut struct {
	ProjectName     string `json:"projectName,omitempty"`
	Tag             string `json:"tag,omitempty"` // every environment with this tag (name=value)
	EnvName         string `json:"envName,omitempty"`
	Permission      string `json:"permission"`
	MaxOpenDuration string `json:"maxOpenDuration,omitempty"`
}

func (g envGrantOut) scope() string {
	if g.Tag != "" {
		return "environments tagged " + g.Tag
	}
	if g.EnvName == "" {
		return "environment project " + g.ProjectName
	}
	return "environment " + g.ProjectName + "/" + g.EnvName
}

// decryptNote is "+decrypt" for a read grant that includes decrypting (write and admin
// always do).
func decryptNote(perm string, d bool) string {
	if d && perm == "read" {
		return "+decrypt"
	}
	return ""
}

func (g grantOut) scope() string {
	switch {
	case g.Stack != "":
		return "stack " + g.Stack
	case g.Project != "":
		return "project " + g.Project
	case g.Env != "":
		return "environment " + g.Env
	case g.EnvProject != "":
		return "environment project " + g.EnvProject
	}
	return "tag " + g.Tag
}

// scopeFlags are --stack PROJECT/STACK, --project P and --tag NAME=VALUE, and for
// environments --env PROJECT/ENV and --env-project P.
type scopeFlags struct{ stack, project, tag, env, envProject, envTag string }

func (s *scopeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.stack, "stack", "", "one stack, as project/stack")
	cmd.Flags().StringVar(&s.project, "project", "", "every stack of a project")
	cmd.Flags().StringVar(&s.tag, "tag", "", "every stack with this tag, as name=value (e.g. env=production)")
	cmd.Flags().StringVar(&s.env, "env", "", "one environment, as project/name")
	cmd.Flags().StringVar(&s.envProject, "env-project", "", "every environment of an ESC project")
}

// isEnv reports whether the scope names environments.
func (s *scopeFlags) isEnv() bool { return s.env != "" || s.envProject != "" || s.envTag != "" }

// addEnvTag adds --env-tag (team grants only: protection rules by --tag select
// environments already).
func (s *scopeFlags) addEnvTag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.envTag, "env-tag", "", "every environment with this tag, as name=value (grants only)")
}

// envBody is the scope as Pulumi's team environment permission ({projectName, envName}).
func (s *scopeFlags) envBody() (map[string]any, error) {
	if s.envProject != "" {
		return map[string]any{"projectName": s.envProject}, nil
	}
	if s.envTag != "" {
		if k, _, ok := strings.Cut(s.envTag, "="); !ok || k == "" {
			return nil, fmt.Errorf("--env-tag takes NAME=VALUE, not %q", s.envTag)
		}
		return map[string]any{"tag": s.envTag}, nil
	}
	p, n, ok := strings.Cut(s.env, "/")
	if !ok || p == "" || n == "" || strings.Contains(n, "/") {
		return nil, fmt.Errorf("--env takes PROJECT/ENV, not %q", s.env)
	}
	return map[string]any{"projectName": p, "envName": n}, nil
}

// check refuses anything but exactly one scope (the server would name only the first
// problem it meets, e.g. a stack that does not exist).
func (s *scopeFlags) check() error {
	n := 0
	for _, v := range []string{s.stack, s.project, s.tag, s.env, s.envProject, s.envTag} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("give exactly one scope: --stack PROJECT/STACK, --project PROJECT, --tag NAME=VALUE, --env PROJECT/ENV or --env-project PROJECT (got %d)", n)
	}
	return nil
}

// String names the scope as the table output does.
func (s *scopeFlags) String() string {
	if s.envTag != "" {
		return "environments tagged " + s.envTag
	}
	return grantOut{Stack: s.stack, Project: s.project, Tag: s.tag, Env: s.env, EnvProject: s.envProject}.scope()
}

func (s *scopeFlags) body(extra map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{"stack": s.stack, "project": s.project, "tag": s.tag, "env": s.env, "envProject": s.envProject} {
		if v != "" {
			m[k] = v
		}
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func newGrantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Give teams permissions on stacks, projects, tag selectors or environments"}
	c := addClientFlags(cmd)
	var perm, maxOpen string
	var decrypt bool
	var sf scopeFlags
	orgDo := orgFlag(cmd, c)
	add := &cobra.Command{
		Use: "add TEAM", Short: "Grant a team read, write or admin on a scope (environments: read, open, write or admin)", Args: cobra.ExactArgs(1),
		Example: "  gatehouse grant add productionadmins --org acme --tag env=production --permission admin\n" +
			"  gatehouse grant add productionreadonly --org acme --tag env=production --permission read\n" +
			"  gatehouse grant add developers --org acme --env-project dev --permission write\n" +
			"  gatehouse grant add productionadmins --org acme --env production/app --permission open",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			if sf.isEnv() {
				if decrypt {
					return fmt.Errorf("--decrypt is for stacks; for environments, the open permission decrypts")
				}
				return grantEnv(cmd, c, orgDo, args[0], &sf, perm, maxOpen)
			}
			if maxOpen != "" {
				return fmt.Errorf("--max-open-duration is for environment grants (--env or --env-project)")
			}
			// A grant on a scope the team already has one on replaces it: say so.
			var before struct {
				Grants []grantOut `json:"grants"`
			}
			if err := orgDo(cmd, "GET", "/teams/"+args[0], nil, &before); err != nil {
				return err
			}
			var prev *grantOut
			for i, g := range before.Grants {
				if g.Stack == sf.stack && g.Project == sf.project && g.Tag == sf.tag {
					prev = &before.Grants[i]
				}
			}
			if err := orgDo(cmd, "PATCH", "/teams/"+args[0], map[string]any{"addGrant": sf.body(map[string]any{"permission": perm, "decrypt": decrypt})}, nil); err != nil {
				return err
			}
			// write and admin always include decrypting (the server stores it so).
			now := grantOut{Stack: sf.stack, Project: sf.project, Tag: sf.tag, Permission: perm, Decrypt: decrypt || perm == "write" || perm == "admin"}
			decrypt := now.Decrypt
			obj := map[string]any{"team": args[0], "grant": now}
			what := perm + decryptNote(perm, decrypt)
			switch {
			case prev == nil:
				obj["change"] = "added"
				return c.done(cmd, obj, "granted team %s %s on %s", args[0], what, sf.String())
			case prev.Permission == perm && prev.Decrypt == decrypt:
				obj["change"] = "unchanged"
				return c.done(cmd, obj, "team %s already has %s on %s (unchanged)", args[0], what, sf.String())
			}
			obj["change"], obj["previous"] = "updated", prev
			return c.done(cmd, obj, "changed team %s's grant on %s from %s to %s", args[0], sf.String(), prev.Permission+decryptNote(prev.Permission, prev.Decrypt), what)
		},
	}
	sf.add(add)
	sf.addEnvTag(add)
	add.Flags().StringVar(&perm, "permission", "read", "read, write or admin (environments also open)")
	add.Flags().BoolVar(&decrypt, "decrypt", false, "with read: also decrypt the stacks' secrets (write and admin always may)")
	add.Flags().StringVar(&maxOpen, "max-open-duration", "", "environments: the longest the team's members may open them for through this grant (a Go duration, e.g. 1h)")
	var rsf scopeFlags
	rm := &cobra.Command{
		Use: "rm TEAM", Short: "Remove a team's grant on a scope", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rsf.check(); err != nil {
				return err
			}
			// A stack scope is removeGrant, an environment scope removeEnvironment.
			what, body := "Grant", rsf.body(nil)
			if rsf.isEnv() {
				b, err := rsf.envBody()
				if err != nil {
					return err
				}
				what, body = "Environment", b
			}
			if err := orgDo(cmd, "PATCH", "/teams/"+args[0], map[string]any{"remove" + what: body}, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"team": args[0], "removed" + what: body}, "removed team %s's grant on %s", args[0], rsf.String())
		},
	}
	rsf.add(rm)
	rsf.addEnvTag(rm)
	cmd.AddCommand(add, rm)
	return cmd
}

func newProtectCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "protect", Short: "Protected stacks and environments: changes only through pipeline credentials"}
	c := addClientFlags(cmd)
	orgDo := orgFlag(cmd, c)
	var sf, rsf scopeFlags
	// change sends the scope of f to /protections (add: POST, rm: DELETE) and reports it
	// under key.
	change := func(f *scopeFlags, method, key, format string) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if err := orgDo(cmd, method, "/protections", f.body(nil), nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{key: f.body(nil)}, format, f.String())
		}
	}
	add := &cobra.Command{
		Use: "add", Short: "Protect a stack, a project or every stack with a tag (and the environments they select), an environment or an ESC project", Args: cobra.NoArgs,
		RunE: change(&sf, "POST", "protected", "protected %s: changes only through pipeline credentials"),
	}
	sf.add(add)
	rm := &cobra.Command{
		Use: "rm", Short: "Remove a protection rule", Args: cobra.NoArgs,
		RunE: change(&rsf, "DELETE", "unprotected", "removed the protection of %s"),
	}
	rsf.add(rm)
	ls := &cobra.Command{
		Use: "ls", Short: "List protection rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Protections []grantOut `json:"protections"`
			}
			if err := orgDo(cmd, "GET", "/protections", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "PROTECTED")
				for _, p := range out.Protections {
					fmt.Fprintln(w, p.scope())
				}
			})
		},
	}
	cmd.AddCommand(add, rm, ls)
	return cmd
}

func newStackCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "stack", Short: "Stacks and who can access them"}
	c := addClientFlags(cmd)
	cmd.AddCommand(newStackLsCmd(c))
	cmd.AddCommand(&cobra.Command{
		Use: "access ORG/PROJECT/STACK", Short: "Who can access a stack, with what permission and why", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			parts := strings.Split(args[0], "/")
			if len(parts) != 3 {
				return fmt.Errorf("name the stack as org/project/stack")
			}
			var out struct {
				Stack     string `json:"stack"`
				Protected bool   `json:"protected"`
				Access    []struct {
					Kind       string `json:"kind"`
					Name       string `json:"name"`
					Permission string `json:"permission"`
					Decrypt    bool   `json:"decrypt"`
					Via        string `json:"via"`
					CanChange  bool   `json:"canChange"`
				} `json:"access"`
			}
			if err := c.do(cmd, "GET", "/api/stacks/"+args[0]+"/access", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "stack %s (protected: %v)\n\nKIND\tNAME\tPERMISSION\tDECRYPT\tCAN CHANGE\tVIA\n", out.Stack, out.Protected)
				for _, a := range out.Access {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%v\t%s\n", a.Kind, a.Name, a.Permission, a.Decrypt, a.CanChange, a.Via)
				}
			})
		},
	})
	return cmd
}

// newStackLsCmd lists the stacks the caller can see (GET /api/user/stacks, every page).
func newStackLsCmd(c *apiClient) *cobra.Command {
	var org, project string
	ls := &cobra.Command{
		Use: "ls", Short: "List the stacks you can see", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type stackOut struct {
				OrgName       string `json:"orgName"`
				ProjectName   string `json:"projectName"`
				StackName     string `json:"stackName"`
				LastUpdate    *int64 `json:"lastUpdate,omitempty"`
				ResourceCount *int   `json:"resourceCount,omitempty"`
			}
			var all []stackOut
			cont := ""
			for {
				q := url.Values{}
				if org != "" {
					q.Set("organization", org)
				}
				if project != "" {
					q.Set("project", project)
				}
				if cont != "" {
					q.Set("continuationToken", cont)
				}
				var page struct {
					Stacks            []stackOut `json:"stacks"`
					ContinuationToken *string    `json:"continuationToken"`
				}
				if err := c.do(cmd, "GET", "/api/user/stacks?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				all = append(all, page.Stacks...)
				if page.ContinuationToken == nil || *page.ContinuationToken == "" {
					break
				}
				cont = *page.ContinuationToken
			}
			out := struct {
				Stacks []stackOut `json:"stacks"`
			}{all}
			if out.Stacks == nil {
				out.Stacks = []stackOut{}
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "STACK\tLAST UPDATE\tRESOURCES")
				for _, st := range all {
					last, n := "-", "-"
					if st.LastUpdate != nil {
						last = when(*st.LastUpdate, "-")
					}
					if st.ResourceCount != nil {
						n = fmt.Sprint(*st.ResourceCount)
					}
					fmt.Fprintf(w, "%s/%s/%s\t%s\t%s\n", st.OrgName, st.ProjectName, st.StackName, last, n)
				}
			})
		},
	}
	ls.Flags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "only this organization's stacks")
	ls.Flags().StringVar(&project, "project", "", "only this project's stacks")
	return ls
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Access tokens: personal (default), --org for organization tokens, --org and --team for team tokens"}
	c := addClientFlags(cmd)
	var org, team string
	cmd.PersistentFlags().StringVar(&org, "org", "", "organization (organization and team tokens)")
	cmd.PersistentFlags().StringVar(&team, "team", "", "team (team tokens; needs --org)")
	base := func() (string, error) {
		switch {
		case team != "" && org == "":
			return "", fmt.Errorf("--team needs --org")
		case team != "":
			return "/api/orgs/" + org + "/teams/" + team + "/tokens", nil
		case org != "":
			return "/api/orgs/" + org + "/tokens", nil
		}
		return "/api/user/tokens", nil
	}
	var desc, expires, role string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a token and print its value on stdout, alone on one line (shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			body := map[string]any{"name": args[0], "description": desc}
			if expires != "" {
				d, err := parseDays(expires)
				if err != nil {
					return err
				}
				body["expires"] = time.Now().Add(d).Unix()
			}
			if role != "" {
				body["role"] = role
			}
			var raw json.RawMessage
			if err := c.do(cmd, "POST", p, body, &raw); err != nil {
				return err
			}
			var out struct {
				TokenValue string `json:"tokenValue"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if c.json {
				fmt.Fprintln(cmd.OutOrStdout(), string(raw))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), out.TokenValue)
			}
			return nil
		},
	}
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	create.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 12h (default: never, or the organization's maximum)")
	create.Flags().StringVar(&role, "role", "", "organization tokens: admin or member (default member)")
	var all bool
	ls := &cobra.Command{
		Use: "ls", Short: "List tokens (never their values)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			if all {
				p += "?filter=all"
			}
			var out struct {
				Tokens []tokenOut `json:"tokens"`
			}
			if err := c.do(cmd, "GET", p, nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tSTATUS\tEXPIRES\tLAST USED\tFROM\tCREATED BY")
				for _, t := range out.Tokens {
					if t.GraceEnds != 0 { // replaced by rotation; works until then
						t.Status += " until " + when(t.GraceEnds, "")
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Status, when(t.Expires, "never"), when(t.LastUsed, "-"), t.LastUsedFrom, t.CreatedBy)
				}
			})
		},
	}
	ls.Flags().BoolVar(&all, "all", false, "include expired and revoked tokens")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token now", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			id, err := c.resolveTokenID(cmd, p, args[0])
			if err != nil {
				return err
			}
			if err := c.do(cmd, "DELETE", p+"/"+url.PathEscape(id), nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"id": id, "status": "revoked"}, "revoked token %s", id)
		},
	}
	var grace string
	rotate := &cobra.Command{
		Use: "rotate ID", Short: "Create a successor token (printed once); the old one keeps working for --grace, then dies", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			d, err := parseDays(grace)
			if err != nil {
				return err
			}
			id, err := c.resolveTokenID(cmd, p, args[0])
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.do(cmd, "POST", p+"/"+url.PathEscape(id)+"/rotate", map[string]any{"graceSeconds": int64(d / time.Second)}, &raw); err != nil {
				return err
			}
			var out struct {
				TokenValue        string `json:"tokenValue"`
				PreviousTokenEnds int64  `json:"previousTokenEnds"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if c.json {
				fmt.Fprintln(cmd.OutOrStdout(), string(raw))
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.TokenValue)
			fmt.Fprintf(cmd.ErrOrStderr(), "the previous token stops working at %s\n", time.Unix(out.PreviousTokenEnds, 0).UTC().Format(time.RFC3339))
			return nil
		},
	}
	rotate.Flags().StringVar(&grace, "grace", "1h", "how long the old token keeps working (e.g. 0s, 1h, 7d)")
	cmd.AddCommand(create, ls, revoke, rotate, newTokenUsageCmd(c, base, &org))
	return cmd
}

// tokenOut is a token as the API lists it.
type tokenOut struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	CreatedBy   string `json:"createdBy"`
	// Role is an organization token's role, in the service's AccessTokenRole shape.
	Role *struct {
		Name string `json:"name"`
	} `json:"role,omitempty"`
	LastUsedFrom string `json:"lastUsedFrom,omitempty"`
	Expires      int64  `json:"expires"`
	LastUsed     int64  `json:"lastUsed"`
	GraceEnds    int64  `json:"graceEnds,omitempty"`
}

// resolveTokenID accepts a whole token ID or a unique prefix of one (of the tokens listed
// under base, revoked and expired included).
func (c *apiClient) resolveTokenID(cmd *cobra.Command, base, arg string) (string, error) {
	if len(arg) == 36 || arg == "" {
		return arg, nil
	}
	var out struct {
		Tokens []tokenOut `json:"tokens"`
	}
	if err := c.do(cmd, "GET", base+"?filter=all", nil, &out); err != nil {
		return "", err
	}
	var match []string
	for _, t := range out.Tokens {
		if strings.HasPrefix(t.ID, arg) {
			match = append(match, t.ID)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("no token ID starts with %q (see gatehouse token ls --all)", arg)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("%q is the start of %d token IDs (%s): give more of it", arg, len(match), strings.Join(match, ", "))
}

func when(unix int64, zero string) string {
	if unix == 0 {
		return zero
	}
	return time.Unix(unix, 0).UTC().Format("2006-01-02 15:04")
}

// parseDays parses a Go duration or a number of days ("90d").
func parseDays(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSuffix(s, "d"), "%d", &n); err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (e.g. 12h or 90d)", s)
	}
	return d, nil
}

// grantEnv gives a team an environment permission (Pulumi's team PATCH
// addEnvironmentPermission), saying whether it added, changed or kept a grant.
func grantEnv(cmd *cobra.Command, c *apiClient, orgDo func(*cobra.Command, string, string, any, any) error, team string, sf *scopeFlags, perm, maxOpen string) error {
	switch perm {
	case "read", "open", "write", "admin":
	default:
		return fmt.Errorf("--permission for environments is read, open, write or admin, not %q", perm)
	}
	body, err := sf.envBody()
	if err != nil {
		return err
	}
	var before struct {
		Environments []envGrantOut `json:"environments"`
	}
	if err := orgDo(cmd, "GET", "/teams/"+team, nil, &before); err != nil {
		return err
	}
	now := envGrantOut{Permission: perm}
	now.ProjectName, _ = body["projectName"].(string)
	now.Tag, _ = body["tag"].(string)
	if maxOpen != "" {
		d, err := time.ParseDuration(maxOpen)
		if err != nil || d < time.Second {
			return fmt.Errorf("--max-open-duration %q: want a Go duration of at least 1s, such as 1h", maxOpen)
		}
		now.MaxOpenDuration = d.Truncate(time.Second).String()
		body["maxOpenDuration"] = now.MaxOpenDuration
	}
	if n, ok := body["envName"].(string); ok {
		now.EnvName = n
	}
	var prev *envGrantOut
	for i, g := range before.Environments {
		if g.ProjectName == now.ProjectName && g.EnvName == now.EnvName && g.Tag == now.Tag {
			prev = &before.Environments[i]
		}
	}
	body["permission"] = perm
	if err := orgDo(cmd, "PATCH", "/teams/"+team, map[string]any{"addEnvironmentPermission": body}, nil); err != nil {
		return err
	}
	obj := map[string]any{"team": team, "environmentGrant": now}
	switch {
	case prev == nil:
		obj["change"] = "added"
		return c.done(cmd, obj, "granted team %s %s on %s", team, now.describe(), sf.String())
	case prev.Permission == perm && prev.MaxOpenDuration == now.MaxOpenDuration:
		obj["change"] = "unchanged"
		return c.done(cmd, obj, "team %s already has %s on %s (unchanged)", team, now.describe(), sf.String())
	}
	obj["change"], obj["previous"] = "updated", prev
	return c.done(cmd, obj, "changed team %s's grant on %s from %s to %s", team, sf.String(), prev.describe(), now.describe())
}

// describe is the permission with its open limit, if any.
func (g envGrantOut) describe() string {
	if g.MaxOpenDuration == "" {
		return g.Permission
	}
	return g.Permission + " (opened for at most " + g.MaxOpenDuration + ")"
}
