//! `caas push --image` when the image is only on the user's machine: the CLI uploads it with
//! `docker save`, the server loads it, and a second push uploads nothing.
//!
//! "The user's machine" is a second Docker engine on this machine, with its own socket and data
//! root, reached by the CLI through `DOCKER_HOST`; caasd keeps using the default engine. So the
//! image really exists on one side only.

use caas_e2e::{docker, repo_root, run, Platform, SecondEngine};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn an_image_only_the_user_has_is_uploaded_once() {
    let local = SecondEngine::start();
    let tag = format!(
        "caas-e2e-upload:{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let script: PathBuf = repo_root().join("examples/demo/build-image.sh");
    let built = run(
        Command::new("bash")
            .env("DOCKER_HOST", local.host())
            .arg(&script)
            .arg("--greeting")
            .arg(format!("uploaded {tag}"))
            .arg(&tag),
        None,
        Duration::from_secs(300),
    );
    assert!(built.success(), "{built}");
    assert!(
        !docker(&["image", "inspect", &tag]).success(),
        "the server's engine must not have {tag}"
    );

    let p = Platform::start();
    p.caas_ok(&["apps:create", "uploaded"]);
    let push = |p: &Platform| {
        let mut cmd = p.caas_command(&["push", "--image", &tag, "-a", "uploaded"]);
        cmd.env("DOCKER_HOST", local.host());
        run(&mut cmd, None, Duration::from_secs(300))
    };
    let first = push(&p);
    assert!(first.success(), "{first}");
    let said = format!("{}{}", first.stdout, first.stderr);
    assert!(said.contains("Upload"), "the first push uploads: {first}");
    assert!(
        docker(&["image", "inspect", &tag]).success(),
        "the server's engine has it now"
    );
    let body = p.wait_for(
        Duration::from_secs(60),
        "the uploaded image to answer",
        || match p.http_get("uploaded", "/") {
            Ok((200, b)) => Some(b),
            _ => None,
        },
    );
    assert!(
        body.starts_with(&format!("uploaded {tag}: web.1")),
        "{body}"
    );

    let second = push(&p);
    assert!(second.success(), "{second}");
    let said = format!("{}{}", second.stdout, second.stderr);
    assert!(
        !said.contains("Upload"),
        "the server already has it: nothing is uploaded: {second}"
    );
    assert!(said.contains("Released v2"), "{second}");

    drop(p);
    let _ = docker(&["rmi", "-f", &tag]);
}
