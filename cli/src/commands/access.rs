//! `access-rules`, `access-rules:deny`, `access-rules:allow`, `access-rules:remove`: who may reach
//! an app through the gateway.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::access::{AccessAction, AccessRule, AccessRuleRequest, Cidr};
use caas_api::path_segment;
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// An address or a network: 203.0.113.0/24, 2001:db8::/32, 198.51.100.7
    cidr: String,
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let rules: Vec<AccessRule> = client()?.get(&format!("/v1/apps/{name}/access-rules"))?;
    if args.json.json {
        return print_json(&rules);
    }
    if rules.is_empty() {
        return say(&format!(
            "{name} admits every client. Refuse some with: caas access-rules:deny 203.0.113.0/24 -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.action.as_str().to_string(),
                sanitize(&r.cidr),
                age(r.created_at),
            ]
        })
        .collect();
    print_table(&["ACTION", "CIDR", "ADDED"], &rows)?;
    if rules.iter().any(|r| r.action == AccessAction::Allow) {
        say("Only clients in an allow network are admitted; deny wins over allow.")?;
    }
    Ok(())
}

fn add(args: RuleArgs, action: AccessAction) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let rule: AccessRule = client()?.post(
        &format!("/v1/apps/{name}/access-rules"),
        &AccessRuleRequest {
            action,
            cidr: args.cidr,
        },
    )?;
    say(&sanitize(&match action {
        AccessAction::Deny => format!(
            "Clients in {} are refused by {name} (403 on HTTP, closed on TCP)",
            rule.cidr
        ),
        AccessAction::Allow => format!(
            "Clients in {} are admitted to {name}; with allow rules, only their networks are",
            rule.cidr
        ),
    }))
}

pub fn deny(args: RuleArgs) -> Result<()> {
    add(args, AccessAction::Deny)
}

pub fn allow(args: RuleArgs) -> Result<()> {
    add(args, AccessAction::Allow)
}

pub fn remove(args: RuleArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let cidr = Cidr::parse(&args.cidr)
        .map_err(|e| CliError::usage(sanitize(&e)))?
        .to_string();
    let client = client()?;
    let rules: Vec<AccessRule> = client.get(&format!("/v1/apps/{name}/access-rules"))?;
    let matching: Vec<&AccessRule> = rules.iter().filter(|r| r.cidr == cidr).collect();
    if matching.is_empty() {
        return Err(CliError::NotFound(format!(
            "{name} has no rule for {cidr}: see caas access-rules -a {name}"
        ))
        .into());
    }
    for r in matching {
        client.delete(&format!(
            "/v1/apps/{name}/access-rules?action={}&cidr={}",
            r.action.as_str(),
            path_segment(&r.cidr)
        ))?;
        say(&format!(
            "Removed the rule {} {cidr} from {name}",
            r.action.as_str()
        ))?;
    }
    Ok(())
}
