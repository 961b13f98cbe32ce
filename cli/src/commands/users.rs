//! Users, per-app access (Heroku's collaborators), tokens and the audit log: `users`,
//! `users:add`, `users:remove`, `whoami`, `access`, `access:add`, `access:remove`, `tokens`,
//! `tokens:create`, `tokens:revoke`, `audit`.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::users::{
    AppAccess, AuditEntry, CreateToken, CreateUser, GrantAccess, NewToken, TokenInfo, User, WhoAmI,
};
use caas_api::Timestamp;
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The new user's name (2 to 32 lowercase letters, digits, '.', '_', '-')
    name: String,
    /// An admin: may do everything, users and hosts included (a member only what it may to its
    /// apps)
    #[arg(long)]
    admin: bool,
}

#[derive(Debug, Args)]
pub struct RemoveUserArgs {
    name: String,
    /// The user's name again, to confirm
    #[arg(long, value_name = "NAME")]
    confirm: Option<String>,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The user to give (or take) access
    user: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    /// What it is for ("CI deploys")
    #[arg(long)]
    description: String,
    /// It stops working after this long: 30d, 12h (at most a year) [default: until revoked]
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Only this app, and only to deploy to it and read it (for CI)
    #[arg(long = "app", value_name = "APP")]
    app: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeTokenArgs {
    /// The token's id, as caas tokens lists it
    id: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this app's changes (members must give one)
    #[arg(short, long, value_name = "APP")]
    app: Option<String>,
    /// How many entries, newest first
    #[arg(short = 'n', long = "num", default_value_t = 50)]
    lines: usize,
    #[command(flatten)]
    json: JsonArg,
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), |t| format!("{} ago", age(t)))
}

pub fn list(args: ListArgs) -> Result<()> {
    let users: Vec<User> = client()?.get("/v1/users")?;
    if args.json.json {
        return print_json(&users);
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                if u.admin { "admin" } else { "member" }.to_string(),
                format!("{} ago", age(u.created_at)),
            ]
        })
        .collect();
    print_table(&["NAME", "ROLE", "CREATED"], &rows)
}

fn show_new_token(t: &NewToken, whose: &str) -> Result<()> {
    say(&format!(
        "{whose} token {} (shown once; caas login --token TOKEN uses it):\n{}",
        t.info.id, t.token
    ))
}

pub fn add(args: AddUserArgs) -> Result<()> {
    let created: NewToken = client()?.post(
        "/v1/users",
        &CreateUser {
            name: args.name.clone(),
            admin: args.admin,
        },
    )?;
    let role = if args.admin { "an admin" } else { "a member" };
    say(&format!("Added {} as {role}.", sanitize(&args.name)))?;
    show_new_token(&created, &format!("{}'s first", sanitize(&args.name)))
}

pub fn remove(args: RemoveUserArgs) -> Result<()> {
    if args.confirm.as_deref() != Some(args.name.as_str()) {
        return Err(CliError::usage(format!(
            "this removes {0}, their tokens and their access to every app; pass --confirm {0}",
            sanitize(&args.name)
        ))
        .into());
    }
    client()?.delete(&format!("/v1/users/{}", args.name))?;
    say(&format!("Removed {}", sanitize(&args.name)))
}

pub fn whoami(args: ListArgs) -> Result<()> {
    let me: WhoAmI = client()?.get("/v1/whoami")?;
    if args.json.json {
        return print_json(&me);
    }
    let role = if me.user.admin { "admin" } else { "member" };
    let scope = me
        .token
        .app
        .as_deref()
        .map_or(String::new(), |a| format!(", only for {a}"));
    say(&sanitize(&format!(
        "{} ({role}), token {}{scope}",
        me.user.name, me.token.id
    )))
}

pub fn access(args: AccessArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let access: AppAccess = client()?.get(&format!("/v1/apps/{name}/access"))?;
    if args.json.json {
        return print_json(&access);
    }
    let rows: Vec<Vec<String>> = access
        .users
        .iter()
        .map(|u| {
            let what = if access.owner.as_deref() == Some(u.as_str()) {
                "owner"
            } else {
                "collaborator"
            };
            vec![u.clone(), what.to_string()]
        })
        .collect();
    if rows.is_empty() {
        return say(&format!("Only admins may use {name}."));
    }
    print_table(&["USER", "ACCESS"], &rows)
}

pub fn grant(args: GrantArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let _: AppAccess = client()?.post(
        &format!("/v1/apps/{name}/access"),
        &GrantAccess {
            user: args.user.clone(),
        },
    )?;
    say(&sanitize(&format!("Gave {} access to {name}", args.user)))
}

pub fn revoke(args: GrantArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete(&format!("/v1/apps/{name}/access/{}", args.user))?;
    say(&sanitize(&format!("Took {}'s access to {name}", args.user)))
}

pub fn tokens(args: ListArgs) -> Result<()> {
    let list: Vec<TokenInfo> = client()?.get("/v1/tokens")?;
    if args.json.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                sanitize(&t.description),
                t.app.clone().unwrap_or_else(|| "all".into()),
                format!("{} ago", age(t.created_at)),
                t.expires_at
                    .map_or_else(|| "never".to_string(), |e| e.to_string()),
                when(t.last_used),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "DESCRIPTION",
            "SCOPE",
            "CREATED",
            "EXPIRES",
            "LAST USED",
        ],
        &rows,
    )
}

/// `30d`, `12h`, `90m` → seconds.
fn parse_expiry(text: &str) -> Result<u64, CliError> {
    let secs = humantime::parse_duration(text)
        .map_err(|_| {
            CliError::usage(format!(
                "invalid --expires {:?}: give a duration such as 30d or 12h",
                sanitize(text)
            ))
        })?
        .as_secs();
    if secs == 0 {
        return Err(CliError::usage("--expires must be longer than 0"));
    }
    Ok(secs)
}

pub fn create_token(args: CreateTokenArgs) -> Result<()> {
    let expires_in_secs = args.expires.as_deref().map(parse_expiry).transpose()?;
    if let Some(app) = &args.app {
        caas_api::validate_app_name(app).map_err(|e| CliError::usage(e.to_string()))?;
    }
    let created: NewToken = client()?.post(
        "/v1/tokens",
        &CreateToken {
            description: args.description,
            expires_in_secs,
            app: args.app,
        },
    )?;
    show_new_token(&created, "New")
}

pub fn revoke_token(args: RevokeTokenArgs) -> Result<()> {
    client()?.delete(&format!("/v1/tokens/{}", args.id))?;
    say(&format!("Revoked token {}", sanitize(&args.id)))
}

pub fn audit(args: AuditArgs) -> Result<()> {
    let mut path = format!("/v1/audit?limit={}", args.lines);
    if let Some(app) = &args.app {
        caas_api::validate_app_name(app).map_err(|e| CliError::usage(e.to_string()))?;
        path.push_str(&format!("&app={app}"));
    }
    let entries: Vec<AuditEntry> = client()?.get(&path)?;
    if args.json.json {
        return print_json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.to_string(),
                e.user.clone(),
                e.address.clone(),
                e.action.clone(),
                e.app.clone().unwrap_or_else(|| "-".into()),
                sanitize(&e.detail),
            ]
        })
        .collect();
    print_table(&["WHEN", "USER", "FROM", "ACTION", "APP", "DETAIL"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_durations() {
        assert_eq!(parse_expiry("30d").unwrap(), 30 * 24 * 3600);
        assert_eq!(parse_expiry("12h").unwrap(), 12 * 3600);
        for bad in ["soon", "0s", ""] {
            assert_eq!(parse_expiry(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
