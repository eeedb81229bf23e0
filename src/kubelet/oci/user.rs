//! The process user as containerd's CRI plugin resolves it (`WithUser`, `WithAdditionalGIDs`,
//! supplemental groups) and upstream's `runAsNonRoot` check. The image's `/etc/passwd` and
//! `/etc/group` arrive as text read by the caller; nothing here touches the filesystem.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::Error;

/// The resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    /// Primary gid first, then `/etc/group` memberships, `supplementalGroups`, `fsGroup`.
    pub additional_gids: Vec<u32>,
}

/// The image's user database, as text from its rootfs (`None` when the file does not exist).
#[derive(Debug, Clone, Copy, Default)]
pub struct UserDb<'a> {
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl<'a> UserDb<'a> {
    fn users(&self) -> impl Iterator<Item = PasswdEntry<'a>> {
        self.passwd.unwrap_or("").lines().filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then_some(PasswdEntry { name, uid, gid })
        })
    }

    fn groups(&self) -> impl Iterator<Item = GroupEntry<'a>> {
        self.group.unwrap_or("").lines().filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            (!name.is_empty() && !name.starts_with('#')).then_some(GroupEntry {
                name,
                gid,
                members,
            })
        })
    }
}

/// The user the container runs as before resolution: container `securityContext` over pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EffectiveIds {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
}

pub(crate) fn effective_ids(pod: &Pod, container: &Container) -> EffectiveIds {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = container.security_context.as_ref();
    EffectiveIds {
        run_as_user: csc
            .and_then(|c| c.run_as_user)
            .or(psc.and_then(|p| p.run_as_user)),
        run_as_group: csc
            .and_then(|c| c.run_as_group)
            .or(psc.and_then(|p| p.run_as_group)),
        run_as_non_root: csc
            .and_then(|c| c.run_as_non_root)
            .or(psc.and_then(|p| p.run_as_non_root)),
    }
}

fn id(value: i64, what: &'static str) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::InvalidId { what, value })
}

/// Resolves the process user: `runAsUser`/`runAsGroup` over the image's `User`, names looked up
/// in the image's user database; then additional gids as containerd adds them.
pub fn resolve_user(
    pod: &Pod,
    container: &Container,
    image_user: &str,
    db: UserDb<'_>,
) -> Result<ProcessUser, Error> {
    let ids = effective_ids(pod, container);
    let (image_user_part, image_group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    // The user string containerd would receive: `uid[:gid]` from the security context; with only
    // runAsGroup set, the image's user with that group (containerd 1.6 refuses this, CRI-O and
    // newer containerd accept it).
    let user_part = match ids.run_as_user {
        Some(uid) => id(uid, "runAsUser")?.to_string(),
        None => image_user_part.to_owned(),
    };
    let group_part = match (ids.run_as_user, ids.run_as_group) {
        (_, Some(gid)) => Some(id(gid, "runAsGroup")?.to_string()),
        (Some(_), None) => None,
        (None, None) => image_group_part.map(str::to_owned),
    };

    let (uid, passwd_gid, username) = if user_part.is_empty() {
        (
            0,
            lookup_uid(db, 0).map(|e| e.gid).unwrap_or(0),
            lookup_uid(db, 0).map(|e| e.name.to_owned()),
        )
    } else if let Ok(uid) = user_part.parse::<u32>() {
        let entry = lookup_uid(db, uid);
        (
            uid,
            entry.as_ref().map(|e| e.gid).unwrap_or(0),
            entry.map(|e| e.name.to_owned()),
        )
    } else {
        let entry = db
            .users()
            .find(|e| e.name == user_part)
            .ok_or_else(|| Error::UnknownUser {
                user: user_part.clone(),
            })?;
        (entry.uid, entry.gid, Some(entry.name.to_owned()))
    };
    let gid = match group_part.as_deref() {
        None | Some("") => passwd_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => db
                .groups()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| Error::UnknownGroup {
                    group: g.to_owned(),
                })?,
        },
    };

    let mut additional = vec![gid];
    let strict = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.supplemental_groups_policy.as_deref())
        == Some("Strict");
    // containerd reads memberships only for a plain user (not `user:group`), by name.
    if !strict
        && group_part.is_none()
        && let Some(name) = username.as_deref()
    {
        for g in db.groups() {
            if g.name != name && g.members.contains(&name) {
                additional.push(g.gid);
            }
        }
    }
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    for g in psc
        .and_then(|p| p.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        additional.push(id(*g, "supplementalGroups")?);
    }
    if let Some(fs_group) = psc.and_then(|p| p.fs_group) {
        additional.push(id(fs_group, "fsGroup")?);
    }
    let mut seen = std::collections::BTreeSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

fn lookup_uid<'a>(db: UserDb<'a>, uid: u32) -> Option<PasswdEntry<'a>> {
    db.users().find(|e| e.uid == uid)
}

/// `format.Pod`: `name_namespace(uid)`.
pub(crate) fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    )
}

/// Upstream's `verifyRunAsNonRoot`: with `runAsNonRoot: true`, refuse uid 0 from the security
/// context or the image, and an image user that is a name (it cannot be verified).
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_user: &str,
) -> Result<(), Error> {
    let ids = effective_ids(pod, container);
    if ids.run_as_non_root != Some(true) {
        return Ok(());
    }
    let pod_name = format_pod(pod);
    let container_name = container.name.clone();
    if let Some(uid) = ids.run_as_user {
        if uid == 0 {
            return Err(Error::RunAsUserBreaksNonRoot {
                pod: pod_name,
                container: container_name,
            });
        }
        return Ok(());
    }
    let user = image_user.split_once(':').map_or(image_user, |(u, _)| u);
    if user.is_empty() {
        return Err(Error::ImageRunsAsRoot {
            pod: pod_name,
            container: container_name,
        });
    }
    match user.parse::<i64>() {
        Ok(0) => Err(Error::ImageRunsAsRoot {
            pod: pod_name,
            container: container_name,
        }),
        Ok(uid) if !(1..=i64::from(i32::MAX)).contains(&uid) => Err(Error::ImageInvalidUid {
            uid,
            pod: pod_name,
            container: container_name,
        }),
        Ok(_) => Ok(()),
        Err(_) => Err(Error::ImageNonNumericUser {
            user: user.to_owned(),
            pod: pod_name,
            container: container_name,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\napp:x:1000:\nwheel:x:10:app,root\naudio:x:29:app\n";

    fn pod_and_container(pod_sc: serde_json::Value, sc: serde_json::Value) -> (Pod, Container) {
        let container = json!({"name": "c", "securityContext": sc});
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"securityContext": pod_sc, "containers": [container.clone()]}
        }))
        .unwrap();
        (pod, serde_json::from_value(container).unwrap())
    }

    #[test]
    fn resolves_users_and_groups_as_containerd() {
        let db = UserDb {
            passwd: Some(PASSWD),
            group: Some(GROUP),
        };
        let cases = [
            (json!({}), json!({}), "", (0, 0, vec![0, 10])),
            (
                json!({}),
                json!({}),
                "app",
                (1000, 1000, vec![1000, 10, 29]),
            ),
            (
                json!({}),
                json!({}),
                "1000",
                (1000, 1000, vec![1000, 10, 29]),
            ),
            (json!({}), json!({}), "1000:33", (1000, 33, vec![33])),
            (json!({}), json!({}), "app:www", (1000, 33, vec![33])),
            (json!({}), json!({}), "4242", (4242, 0, vec![0])),
            (
                json!({"runAsUser": 33}),
                json!({}),
                "app",
                (33, 33, vec![33]),
            ),
            (
                json!({"runAsUser": 33}),
                json!({"runAsUser": 1000, "runAsGroup": 5}),
                "",
                (1000, 5, vec![5]),
            ),
            (
                json!({"runAsGroup": 7}),
                json!({}),
                "app",
                (1000, 7, vec![7]),
            ),
            (
                json!({"runAsUser": 1000, "supplementalGroups": [2000, 10], "fsGroup": 3000}),
                json!({}),
                "",
                (1000, 1000, vec![1000, 10, 29, 2000, 3000]),
            ),
            (
                json!({"runAsUser": 1000, "supplementalGroupsPolicy": "Strict", "fsGroup": 3000}),
                json!({}),
                "",
                (1000, 1000, vec![1000, 3000]),
            ),
        ];
        for (pod_sc, sc, image_user, (uid, gid, gids)) in cases {
            let (pod, c) = pod_and_container(pod_sc.clone(), sc.clone());
            let u = resolve_user(&pod, &c, image_user, db).unwrap();
            assert_eq!(
                (u.uid, u.gid, u.additional_gids),
                (uid, gid, gids),
                "{pod_sc} {sc} {image_user:?}"
            );
        }
    }

    #[test]
    fn unknown_names_and_bad_ids_are_errors() {
        let db = UserDb {
            passwd: Some(PASSWD),
            group: Some(GROUP),
        };
        let cases = [
            (
                json!({}),
                "nobody",
                "unable to find user nobody: no matching entries in passwd file",
            ),
            (
                json!({}),
                "app:staff",
                "unable to find group staff: no matching entries in group file",
            ),
            (
                json!({"runAsUser": -1}),
                "",
                "runAsUser -1 is not a valid id",
            ),
        ];
        for (sc, image_user, want) in cases {
            let (pod, c) = pod_and_container(sc, json!({}));
            assert_eq!(
                resolve_user(&pod, &c, image_user, db)
                    .unwrap_err()
                    .to_string(),
                want
            );
        }
        let (pod, c) = pod_and_container(json!({}), json!({}));
        let none = resolve_user(&pod, &c, "", UserDb::default()).unwrap();
        assert_eq!((none.uid, none.gid, none.additional_gids), (0, 0, vec![0]));
    }

    #[test]
    fn run_as_non_root_refuses_root_with_upstream_messages() {
        let cases = [
            (json!({}), json!({}), "", None),
            (json!({"runAsNonRoot": true}), json!({}), "1000", None),
            (
                json!({"runAsNonRoot": true}),
                json!({"runAsUser": 5}),
                "",
                None,
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({"runAsNonRoot": false}),
                "",
                None,
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({"runAsUser": 0}),
                "1000",
                Some(
                    "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)",
                ),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({}),
                "",
                Some(
                    "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)",
                ),
            ),
            (
                json!({}),
                json!({"runAsNonRoot": true}),
                "0:0",
                Some(
                    "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)",
                ),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({}),
                "app",
                Some(
                    "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"p_ns(u1)\", container: c)",
                ),
            ),
        ];
        for (pod_sc, sc, image_user, want) in cases {
            let (pod, c) = pod_and_container(pod_sc.clone(), sc.clone());
            let got = verify_run_as_non_root(&pod, &c, image_user)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{pod_sc} {sc} {image_user:?}");
        }
    }
}
