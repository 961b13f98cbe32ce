//! `caas`: the command-line client of the caas platform. It only speaks the HTTP API described in
//! docs/api.md.

// Output goes through writers that return errors (`output::say`, `print_json`, `writeln!`):
// `println!` panics when stdout is a closed pipe, and `caas ... | head -1` must end quietly.
#![deny(clippy::print_stdout)]

mod app;
mod build;
mod client;
mod commands;
mod config;
mod deploy;
mod error;
mod events;
mod git;
mod output;
mod source;
#[cfg(test)]
mod testutil;

use clap::{CommandFactory, Parser, Subcommand};
use commands::{
    access, addons, alerts, apps, auth, autoscale, buildpacks, builds, canary, certs, checks,
    config_vars, domains, drains, git as git_cmd, hooks, hosts, instances, logs, metrics, ports,
    ps, push, releases, rename, resize, run, servers, shell, users, version,
};
use std::io::Write;

const AFTER_HELP: &str = "\
Server and token come from CAAS_SERVER / CAAS_TOKEN, else from the file saved by `caas login`
($CAAS_CONFIG, or $XDG_CONFIG_HOME/caas/config.json, or ~/.config/caas/config.json).
The app comes from -a/--app, else CAAS_APP, else the current git repository's remote
named caas (set up by caas git:remote -a APP).

Exit codes:
  0  success
  1  failure (server error, deploy not healthy, ...)
  2  usage or invalid input, including input the server refuses (a hostile or
     malformed archive, an upload over its size limit)
  3  unauthorized or forbidden: run caas login
  4  not found
  5  conflict (already exists)
  6  cannot reach the server's API (nothing answers, or the URL is caas's gateway)";

#[derive(Debug, Parser)]
#[command(
    name = "caas",
    version,
    about = "Deploy and run apps on a caas server",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List apps
    Apps(apps::ListArgs),
    /// Create an app
    #[command(name = "apps:create", visible_alias = "create")]
    AppsCreate(apps::CreateArgs),
    /// Show an app
    #[command(name = "apps:info", visible_alias = "info")]
    AppsInfo(apps::InfoArgs),
    /// Destroy an app with its releases and instances
    #[command(name = "apps:destroy", visible_alias = "destroy")]
    AppsDestroy(apps::DestroyArgs),
    /// Rename an app (OLD NEW); its URL and the git remote caas follow
    #[command(name = "apps:rename", visible_alias = "rename")]
    AppsRename(rename::RenameArgs),
    /// Show how an app's rollouts and drains go (drain, stop-timeout, min-up, max-surge, ...)
    #[command(name = "apps:settings")]
    AppsSettings(checks::SettingsArgs),
    /// Change how an app's rollouts and drains go, e.g. drain=60s max-surge=2
    #[command(name = "apps:settings:set")]
    AppsSettingsSet(checks::SettingsSetArgs),
    /// Put an app's settings back to the server's defaults
    #[command(name = "apps:settings:unset")]
    AppsSettingsUnset(checks::SettingsUnsetArgs),
    /// Open the app's URL in a browser ($BROWSER, else xdg-open or open)
    Open(apps::OpenArgs),
    /// Build a directory or archive into a release, or deploy a Docker image
    Push(push::PushArgs),
    /// List an app's builds, newest first
    Builds(builds::BuildsArgs),
    /// Print what a build printed
    #[command(name = "builds:output")]
    BuildsOutput(builds::OutputArgs),
    /// List the server's buildpacks in the order they are tried
    Buildpacks(buildpacks::ListArgs),
    /// Build an app with this buildpack instead of detecting one
    #[command(name = "buildpacks:set")]
    BuildpacksSet(buildpacks::SetArgs),
    /// Let an app's builds detect their buildpack again
    #[command(name = "buildpacks:clear")]
    BuildpacksClear(buildpacks::ClearArgs),
    /// List an app's instances
    Ps(ps::PsArgs),
    /// Set how many instances of each process type run
    #[command(name = "ps:scale", visible_alias = "scale")]
    PsScale(ps::ScaleArgs),
    /// List an app's health checks
    Checks(checks::ListArgs),
    /// Set a health check of a process type (a new release, rolled out like a config change)
    #[command(name = "checks:set")]
    ChecksSet(checks::SetArgs),
    /// Remove a process type's health checks (all, or one kind)
    #[command(name = "checks:clear")]
    ChecksClear(checks::ClearArgs),
    /// Replace instances with fresh ones: one (web.1), a process type (web), or all
    #[command(name = "ps:restart", visible_alias = "restart")]
    PsRestart(instances::RestartArgs),
    /// Stop an instance (web.1) or a process type's; the formation starts fresh ones
    #[command(name = "ps:stop", visible_alias = "stop")]
    PsStop(instances::StopArgs),
    /// Set a process type's memory limit and CPU cap (a new release replaces its instances)
    #[command(name = "ps:resize", visible_alias = "resize")]
    PsResize(resize::ResizeArgs),
    /// Show an app's logs
    Logs(logs::LogsArgs),
    /// Run a one-off process of the app's current release: caas run -a APP -- CMD [ARGS...]
    Run(run::RunArgs),
    /// Show an app's traffic over the last minutes: requests/s, status classes, latency
    Metrics(metrics::MetricsArgs),
    /// Show an app's alert conditions and what is raised now
    Alerts(alerts::ShowArgs),
    /// Raise a caas[alert] line (and call a webhook) while p95 latency or the 5xx rate is too high
    #[command(name = "alerts:set")]
    AlertsSet(alerts::SetArgs),
    /// Turn an app's alerts off
    #[command(name = "alerts:clear")]
    AlertsClear(alerts::ClearArgs),
    /// Show an app's autoscaled process types and their last decisions
    Autoscale(autoscale::ListArgs),
    /// Keep a process type between --min and --max, sized for --rps or --cpu per instance
    #[command(name = "autoscale:set")]
    AutoscaleSet(autoscale::SetArgs),
    /// Stop autoscaling a process type (it keeps its count)
    #[command(name = "autoscale:off")]
    AutoscaleOff(autoscale::OffArgs),
    /// List an app's log drains and how they are doing
    Drains(drains::ListArgs),
    /// Send an app's log lines to a syslog server or an HTTPS endpoint too
    #[command(name = "drains:add")]
    DrainsAdd(drains::AddArgs),
    /// Stop sending an app's log lines to a drain
    #[command(name = "drains:remove")]
    DrainsRemove(drains::RemoveArgs),
    /// List an app's notification webhooks and their recent deliveries
    Webhooks(hooks::ListArgs),
    /// POST a signed JSON event to a URL on each release, failed build and crash loop
    #[command(name = "webhooks:add")]
    WebhooksAdd(hooks::AddArgs),
    /// Stop notifying a webhook
    #[command(name = "webhooks:remove")]
    WebhooksRemove(hooks::RemoveArgs),
    /// List add-ons: all you can see, or an app's (-a APP)
    Addons(addons::ListArgs),
    /// Create an add-on (postgres, redis, mysql; external with --url) and attach it to an app
    #[command(name = "addons:create")]
    AddonsCreate(addons::CreateArgs),
    /// Show an add-on: its kind, state, host and the apps it is attached to
    #[command(name = "addons:info")]
    AddonsInfo(addons::InfoArgs),
    /// Attach an add-on to another app too (it gets the add-on's URL as a config var)
    #[command(name = "addons:attach")]
    AddonsAttach(addons::AttachArgs),
    /// Take an add-on's config var out of an app
    #[command(name = "addons:detach")]
    AddonsDetach(addons::DetachArgs),
    /// Give an external add-on a new URL: every attached app gets a new release
    #[command(name = "addons:update")]
    AddonsUpdate(addons::UpdateArgs),
    /// Destroy an add-on and its data (refused while attached, unless --detach)
    #[command(name = "addons:destroy")]
    AddonsDestroy(addons::DestroyArgs),
    /// Write a logical dump of an add-on's data to stdout (pg_dump, Redis RDB, mysqldump)
    #[command(name = "addons:backup")]
    AddonsBackup(addons::DumpArgs),
    /// Replace an add-on's data with a dump read from stdin (made by addons:backup)
    #[command(name = "addons:restore")]
    AddonsRestore(addons::DumpArgs),
    /// List an app's custom domains
    Domains(domains::ListArgs),
    /// Serve an app at a domain of yours too (www.example.com, or *.example.com)
    #[command(name = "domains:add")]
    DomainsAdd(domains::AddArgs),
    /// Stop serving an app at one of its custom domains
    #[command(name = "domains:remove")]
    DomainsRemove(domains::RemoveArgs),
    /// Say that an app's web process speaks HTTP/2 (on/off; gRPC), or show whether it does
    #[command(name = "apps:http2")]
    AppsHttp2(domains::Http2Args),
    /// Redirect an app's plain HTTP requests to HTTPS (on/off), or show whether it does
    #[command(name = "domains:redirect-https")]
    DomainsRedirectHttps(domains::RedirectArgs),
    /// List who may reach an app: its allow and deny rules
    #[command(name = "access-rules")]
    AccessRules(access::ListArgs),
    /// Refuse an app's clients from an address or network (403 on HTTP, closed on TCP)
    #[command(name = "access-rules:deny")]
    AccessRulesDeny(access::RuleArgs),
    /// Admit an app's clients from an address or network (then only allowed networks are)
    #[command(name = "access-rules:allow")]
    AccessRulesAllow(access::RuleArgs),
    /// Remove an app's rules for an address or network
    #[command(name = "access-rules:remove")]
    AccessRulesRemove(access::RuleArgs),
    /// List an app's TCP routes
    Ports(ports::ListArgs),
    /// Open a public TCP port on the gateway that forwards to an app's web instances
    #[command(name = "ports:add")]
    PortsAdd(ports::AddArgs),
    /// Close one of an app's TCP routes
    #[command(name = "ports:remove")]
    PortsRemove(ports::RemoveArgs),
    /// List an app's TLS certificates
    Certs(certs::ListArgs),
    /// Add a TLS certificate (PEM chain and key) for an app's domains
    #[command(name = "certs:add")]
    CertsAdd(certs::AddArgs),
    /// Remove one of an app's TLS certificates
    #[command(name = "certs:remove")]
    CertsRemove(certs::RemoveArgs),
    /// Obtain and renew certificates for an app's custom domains over ACME (on/off), or show them
    #[command(name = "certs:auto")]
    CertsAuto(certs::AutoArgs),
    /// List an app's releases, newest first
    Releases(releases::ReleasesArgs),
    /// Show one release: image, status, who made it and when, its build, its config keys
    #[command(name = "releases:info")]
    ReleasesInfo(releases::InfoArgs),
    /// Run a release beside the serving one with a share of the requests (a canary)
    #[command(name = "releases:canary")]
    ReleasesCanary(canary::StartArgs),
    /// Change the share of requests the running canary gets
    #[command(name = "releases:canary:set")]
    ReleasesCanarySet(canary::SetArgs),
    /// Make the canary the app's release: it rolls out as a deploy does
    #[command(name = "releases:promote")]
    ReleasesPromote(canary::PromoteArgs),
    /// End the canary: its instances drain and go, the serving release takes every request
    #[command(name = "releases:abort")]
    ReleasesAbort(canary::AbortArgs),
    /// Make a new release from an earlier one (default: the one before the current release)
    #[command(visible_alias = "releases:rollback")]
    Rollback(releases::RollbackArgs),
    /// Show an app's config vars
    Config(config_vars::ShowArgs),
    /// Print one config var's value
    #[command(name = "config:get")]
    ConfigGet(config_vars::GetArgs),
    /// Set config vars and restart the app with them
    #[command(name = "config:set")]
    ConfigSet(config_vars::SetArgs),
    /// Remove config vars and restart the app without them
    #[command(name = "config:unset")]
    ConfigUnset(config_vars::UnsetArgs),
    /// Point this git repository's caas remote at an app, for git push caas main
    #[command(name = "git:remote")]
    GitRemote(git_cmd::RemoteArgs),
    /// Build and deploy an app from pushes to a repository on GitHub, GitLab or Gitea (by webhook)
    #[command(name = "git:connect")]
    GitConnect(hooks::ConnectArgs),
    /// Show the repository an app builds from, and its webhook URL
    #[command(name = "git:connection")]
    GitConnection(hooks::ShowArgs),
    /// Stop building an app from its repository's pushes
    #[command(name = "git:disconnect")]
    GitDisconnect(hooks::DisconnectArgs),
    /// git's credential helper for caas remotes (git runs it; see caas git:remote)
    #[command(name = "git:credential", hide = true)]
    GitCredential(git_cmd::CredentialArgs),
    /// Check a token against a server and save both
    Login(auth::LoginArgs),
    /// Forget the saved token
    Logout,
    /// List the hosts that run instances
    Hosts(hosts::HostsArgs),
    /// List the control-plane servers, which one leads, and whether each answers (admins only)
    Servers(servers::ServersArgs),
    /// List the users (admins only)
    Users(users::ListArgs),
    /// Add a user and print their first token (admins only)
    #[command(name = "users:add")]
    UsersAdd(users::AddUserArgs),
    /// Remove a user, their tokens and their access (admins only)
    #[command(name = "users:remove")]
    UsersRemove(users::RemoveUserArgs),
    /// Show who the token in use belongs to
    Whoami(users::ListArgs),
    /// List who may use an app besides admins
    Access(users::AccessArgs),
    /// Give a user access to an app (its owner or an admin)
    #[command(name = "access:add")]
    AccessAdd(users::GrantArgs),
    /// Take a user's access to an app (its owner or an admin)
    #[command(name = "access:remove")]
    AccessRemove(users::GrantArgs),
    /// List your tokens (never their secrets)
    Tokens(users::ListArgs),
    /// Make a token: for CI, scoped to one app with --app, expiring with --expires
    #[command(name = "tokens:create")]
    TokensCreate(users::CreateTokenArgs),
    /// Revoke a token; it stops working at once, open streams included
    #[command(name = "tokens:revoke")]
    TokensRevoke(users::RevokeTokenArgs),
    /// Who changed what, when and from where
    Audit(users::AuditArgs),
    /// Let a host join: a one-time join token for it and the command to run there (admins)
    #[command(name = "hosts:add")]
    HostsAdd(hosts::AddArgs),
    /// Remove a host: its credentials stop working, its instances start elsewhere (admins)
    #[command(name = "hosts:remove")]
    HostsRemove(hosts::RemoveArgs),
    /// Show the client's and the server's version
    Version(version::VersionArgs),
    /// Print shell completions: caas completions bash > /etc/bash_completion.d/caas
    Completions(shell::CompletionsArgs),
    /// Write a man page per command into DIR
    #[command(name = "man")]
    Man(shell::ManArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Apps(a) => apps::list(a),
        Cmd::AppsCreate(a) => apps::create(a),
        Cmd::AppsInfo(a) => apps::info(a),
        Cmd::AppsDestroy(a) => apps::destroy(a),
        Cmd::AppsRename(a) => rename::rename(a),
        Cmd::AppsSettings(a) => checks::settings(a),
        Cmd::AppsSettingsSet(a) => checks::settings_set(a),
        Cmd::AppsSettingsUnset(a) => checks::settings_unset(a),
        Cmd::Open(a) => apps::open(a),
        Cmd::Push(a) => push::push(a),
        Cmd::Builds(a) => builds::list(a),
        Cmd::BuildsOutput(a) => builds::output(a),
        Cmd::Buildpacks(a) => buildpacks::list(a),
        Cmd::BuildpacksSet(a) => buildpacks::set(a),
        Cmd::BuildpacksClear(a) => buildpacks::clear(a),
        Cmd::Ps(a) => ps::list(a),
        Cmd::PsScale(a) => ps::scale(a),
        Cmd::Checks(a) => checks::list(a),
        Cmd::ChecksSet(a) => checks::set(a),
        Cmd::ChecksClear(a) => checks::clear(a),
        Cmd::PsRestart(a) => instances::restart(a),
        Cmd::PsStop(a) => instances::stop(a),
        Cmd::PsResize(a) => resize::resize(a),
        Cmd::Logs(a) => logs::logs(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Metrics(a) => metrics::show(a),
        Cmd::Alerts(a) => alerts::show(a),
        Cmd::AlertsSet(a) => alerts::set(a),
        Cmd::AlertsClear(a) => alerts::clear(a),
        Cmd::Autoscale(a) => autoscale::list(a),
        Cmd::AutoscaleSet(a) => autoscale::set(a),
        Cmd::AutoscaleOff(a) => autoscale::off(a),
        Cmd::Drains(a) => drains::list(a),
        Cmd::DrainsAdd(a) => drains::add(a),
        Cmd::DrainsRemove(a) => drains::remove(a),
        Cmd::Webhooks(a) => hooks::list(a),
        Cmd::WebhooksAdd(a) => hooks::add(a),
        Cmd::WebhooksRemove(a) => hooks::remove(a),
        Cmd::Addons(a) => addons::list(a),
        Cmd::AddonsCreate(a) => addons::create(a),
        Cmd::AddonsInfo(a) => addons::info(a),
        Cmd::AddonsAttach(a) => addons::attach(a),
        Cmd::AddonsDetach(a) => addons::detach(a),
        Cmd::AddonsUpdate(a) => addons::update(a),
        Cmd::AddonsDestroy(a) => addons::destroy(a),
        Cmd::AddonsBackup(a) => addons::backup(a),
        Cmd::AddonsRestore(a) => addons::restore(a),
        Cmd::Domains(a) => domains::list(a),
        Cmd::DomainsAdd(a) => domains::add(a),
        Cmd::DomainsRemove(a) => domains::remove(a),
        Cmd::DomainsRedirectHttps(a) => domains::redirect_https(a),
        Cmd::AppsHttp2(a) => domains::http2(a),
        Cmd::AccessRules(a) => access::list(a),
        Cmd::AccessRulesDeny(a) => access::deny(a),
        Cmd::AccessRulesAllow(a) => access::allow(a),
        Cmd::AccessRulesRemove(a) => access::remove(a),
        Cmd::Ports(a) => ports::list(a),
        Cmd::PortsAdd(a) => ports::add(a),
        Cmd::PortsRemove(a) => ports::remove(a),
        Cmd::Certs(a) => certs::list(a),
        Cmd::CertsAdd(a) => certs::add(a),
        Cmd::CertsRemove(a) => certs::remove(a),
        Cmd::CertsAuto(a) => certs::auto(a),
        Cmd::Releases(a) => releases::list(a),
        Cmd::ReleasesInfo(a) => releases::info(a),
        Cmd::Rollback(a) => releases::rollback(a),
        Cmd::ReleasesCanary(a) => canary::start(a),
        Cmd::ReleasesCanarySet(a) => canary::set(a),
        Cmd::ReleasesPromote(a) => canary::promote(a),
        Cmd::ReleasesAbort(a) => canary::abort(a),
        Cmd::Config(a) => config_vars::show(a),
        Cmd::ConfigGet(a) => config_vars::get(a),
        Cmd::ConfigSet(a) => config_vars::set(a),
        Cmd::ConfigUnset(a) => config_vars::unset(a),
        Cmd::GitRemote(a) => git_cmd::remote(a),
        Cmd::GitCredential(a) => git_cmd::credential(a),
        Cmd::GitConnect(a) => hooks::connect(a),
        Cmd::GitConnection(a) => hooks::show(a),
        Cmd::GitDisconnect(a) => hooks::disconnect(a),
        Cmd::Login(a) => auth::login(a),
        Cmd::Logout => auth::logout(),
        Cmd::Hosts(a) => hosts::list(a),
        Cmd::Servers(a) => servers::list(a),
        Cmd::HostsAdd(a) => hosts::add(a),
        Cmd::HostsRemove(a) => hosts::remove(a),
        Cmd::Users(a) => users::list(a),
        Cmd::UsersAdd(a) => users::add(a),
        Cmd::UsersRemove(a) => users::remove(a),
        Cmd::Whoami(a) => users::whoami(a),
        Cmd::Access(a) => users::access(a),
        Cmd::AccessAdd(a) => users::grant(a),
        Cmd::AccessRemove(a) => users::revoke(a),
        Cmd::Tokens(a) => users::tokens(a),
        Cmd::TokensCreate(a) => users::create_token(a),
        Cmd::TokensRevoke(a) => users::revoke_token(a),
        Cmd::Audit(a) => users::audit(a),
        Cmd::Version(a) => version::show(a),
        Cmd::Completions(a) => shell::completions(a, Cli::command()),
        Cmd::Man(a) => shell::man(a, Cli::command()),
    }
}

fn main() {
    // clap prints its own usage errors and exits 2 (0 for --help/--version).
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        let (code, message) = error::report(&err);
        if let Some(message) = message {
            let prefix = console::style("error:").red().bold().for_stderr();
            // Not eprintln!: a closed stderr must not turn the exit code into a panic's 101.
            let _ = writeln!(std::io::stderr(), "{prefix} {}", output::sanitize(&message));
        }
        std::process::exit(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn heroku_style_names_and_aliases_parse() {
        for args in [
            &["caas", "apps:create", "demo"][..],
            &["caas", "create", "demo"],
            &["caas", "apps:create"],
            &["caas", "info", "-a", "demo", "--json"],
            &["caas", "apps:info", "demo", "--json"],
            &["caas", "destroy", "-a", "demo", "--confirm", "demo"],
            &["caas", "apps:destroy", "demo", "--confirm", "demo"],
            &["caas", "scale", "web=2", "-a", "demo"],
            &["caas", "ps:scale", "-a", "demo", "web=-1", "worker=1"],
            &["caas", "ps:scale", "-a", "demo"],
            &["caas", "ps:scale", "web+1", "worker-2", "-a", "demo"],
            &["caas", "login"],
            &["caas", "logs", "-a", "demo", "-n", "5", "-t"],
            &["caas", "run", "-a", "demo", "--", "bash", "-c", "ls -l"],
            &[
                "caas",
                "run",
                "-d",
                "-a",
                "demo",
                "--",
                "python",
                "--version",
            ],
            &["caas", "push", "-a", "demo"],
            &[
                "caas",
                "push",
                "./site",
                "-a",
                "demo",
                "--wait-timeout",
                "30",
            ],
            &["caas", "push", "app.war", "-a", "demo", "--no-wait"],
            &["caas", "builds", "-a", "demo", "--json"],
            &["caas", "builds:output", "#3", "-a", "demo", "-f"],
            &["caas", "builds:output", "3", "--follow", "-a", "demo"],
            &["caas", "buildpacks", "--json"],
            &["caas", "buildpacks:set", "python", "-a", "demo"],
            &["caas", "buildpacks:clear", "-a", "demo"],
            &[
                "caas",
                "push",
                "--image",
                "demo:latest",
                "-a",
                "demo",
                "--no-wait",
            ],
            &["caas", "config", "-a", "demo", "--json"],
            &["caas", "config:get", "FOO", "-a", "demo"],
            &["caas", "config:set", "A=1", "B=x=y", "C=", "-a", "demo"],
            &["caas", "config:set", "-a", "demo", "GREETING=hello world"],
            &["caas", "config:unset", "A", "B", "-a", "demo"],
            &["caas", "rollback", "-a", "demo"],
            &["caas", "rollback", "v3", "-a", "demo"],
            &["caas", "releases:rollback", "3", "-a", "demo"],
            &["caas", "git:remote", "-a", "demo"],
            &["caas", "git:remote", "-a", "demo", "-r", "prod"],
            &["caas", "checks", "-a", "demo", "--json"],
            &[
                "caas",
                "checks:set",
                "web",
                "--path",
                "/health",
                "-a",
                "demo",
            ],
            &[
                "caas",
                "checks:set",
                "web",
                "--path",
                "/h",
                "--kind",
                "liveness",
                "--timeout",
                "2s",
                "--interval",
                "2s",
                "--attempts",
                "5",
                "--wait",
                "0s",
                "--content",
                "ok",
                "--status",
                "200",
                "--strategy",
                "keep=1",
                "-a",
                "demo",
                "--no-wait",
            ],
            &[
                "caas",
                "checks:clear",
                "web",
                "--kind",
                "readiness",
                "-a",
                "demo",
            ],
            &["caas", "apps:settings", "-a", "demo", "--json"],
            &[
                "caas",
                "apps:settings:set",
                "drain=60s",
                "max-surge=25%",
                "-a",
                "demo",
            ],
            &["caas", "apps:settings:unset", "drain", "-a", "demo"],
            &["caas", "git:credential", "get"],
            &["caas", "git:credential", "store"],
            &["caas", "domains", "-a", "demo", "--json"],
            &["caas", "domains:add", "*.example.com", "-a", "demo"],
            &["caas", "domains:remove", "www.example.com", "-a", "demo"],
            &["caas", "domains:redirect-https", "on", "-a", "demo"],
            &["caas", "domains:redirect-https", "-a", "demo"],
            &["caas", "apps:http2", "on", "-a", "demo"],
            &["caas", "certs", "-a", "demo", "--json"],
            &["caas", "access-rules", "-a", "demo", "--json"],
            &["caas", "ports", "-a", "demo", "--json"],
            &["caas", "ports:add", "tcp", "-a", "demo", "--target", "5432"],
            &["caas", "ports:add", "tcp", "--port", "10001", "-a", "demo"],
            &["caas", "ports:remove", "10001", "-a", "demo"],
            &["caas", "access-rules:deny", "203.0.113.0/24", "-a", "demo"],
            &["caas", "access-rules:allow", "::1", "-a", "demo"],
            &[
                "caas",
                "access-rules:remove",
                "203.0.113.0/24",
                "-a",
                "demo",
            ],
            &["caas", "certs:add", "c.pem", "k.pem", "-a", "demo"],
            &["caas", "certs:remove", "0123456789ab", "-a", "demo"],
            &["caas", "certs:auto", "on", "-a", "demo"],
            &["caas", "certs:auto", "-a", "demo", "--json"],
            &[
                "caas",
                "alerts:set",
                "-a",
                "demo",
                "--p95",
                "500ms",
                "--5xx-rate",
                "1%",
            ],
            &[
                "caas",
                "alerts:set",
                "--5xx-rate",
                "1%",
                "--webhook",
                "https://h/x",
                "-a",
                "d",
            ],
            &["caas", "alerts", "-a", "demo", "--json"],
            &["caas", "alerts:clear", "-a", "demo"],
            &[
                "caas",
                "autoscale:set",
                "web",
                "--min",
                "1",
                "--max",
                "10",
                "--rps",
                "100",
                "-a",
                "demo",
            ],
            &[
                "caas",
                "autoscale:set",
                "worker",
                "--max",
                "3",
                "--cpu",
                "70%",
                "--cooldown",
                "30s",
            ],
            &["caas", "autoscale", "-a", "demo", "--json"],
            &["caas", "autoscale:off", "web", "-a", "demo"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn scale_takes_negative_numbers_as_pairs_and_still_sees_the_app_flag() {
        let cli = Cli::try_parse_from(["caas", "scale", "-1", "-a", "demo"]).unwrap();
        let Cmd::PsScale(args) = cli.command else {
            panic!("not scale")
        };
        let text = format!("{args:?}");
        assert!(text.contains("\"-1\""), "{text}");
        assert!(text.contains("Some(\"demo\")"), "{text}");
    }

    #[test]
    fn push_takes_a_path_or_an_image_not_both() {
        let err =
            Cli::try_parse_from(["caas", "push", ".", "--image", "x", "-a", "demo"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_pushed_canary_is_built_from_source_and_its_weight_needs_it() {
        let err = Cli::try_parse_from(["caas", "push", "--image", "x", "--canary", "-a", "demo"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err =
            Cli::try_parse_from(["caas", "push", ".", "--weight", "20", "-a", "demo"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(
            Cli::try_parse_from(["caas", "push", "--canary", "--weight", "20", "-a", "x"]).is_ok()
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = Cli::try_parse_from(["caas", "buildpacks:set"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn an_app_named_twice_is_a_usage_error() {
        for args in [
            &["caas", "apps:info", "demo", "-a", "other"][..],
            &["caas", "destroy", "demo", "-a", "demo", "--confirm", "demo"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }
}
