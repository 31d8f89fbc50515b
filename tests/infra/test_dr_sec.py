"""DR5-DR7 and SEC1-SEC4 (infrastructure side), asserted on the synthesized templates."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.config import ConfigError, EtlConfig, parse_partners
from infra.guardrails import AUTO_DELETE_NEEDS, DENIED_ACTIONS
from infra.storage import NONCURRENT_VERSION_DAYS

from .conftest import DR, PRIMARY, SUFFIX, Synth, synth
from .test_dr import text
from .test_stack import STACKS, as_list, data_bucket, props, resources, role_statements

SEC3_DENIED = {
    "s3:DeleteObjectVersion",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "dynamodb:DeleteBackup",
}
INF11_DENIED = {"s3:DeleteBucket", "dynamodb:DeleteTable"}


def _statements(template: dict[str, Any], role_id: str, effect: str) -> list[dict[str, Any]]:
    return [s for s in role_statements(template, role_id) if s["Effect"] == effect]


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in as_list(s["Action"])}


def _is_auto_delete_role(role_id: str) -> bool:
    return role_id.startswith("CustomS3AutoDeleteObjectsCustomResourceProviderRole")


# ---- DR5: moves keep versions ------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DR5_no_role_but_the_auto_delete_provider_may_delete_an_object_version(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    roles = resources(template, "AWS::IAM::Role")
    assert len(roles) > 8
    for role_id in roles:
        allowed = _actions(_statements(template, role_id, "Allow"))
        assert not any(a in ("s3:DeleteObjectVersion", "s3:DeleteObject*", "s3:*", "*") for a in allowed), (
            role_id,
            allowed,
        )
    # The only principal any bucket policy lets delete versions is the auto-delete provider.
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            actions = set(as_list(statement["Action"]))
            if statement["Effect"] == "Allow" and actions & {"s3:DeleteObjectVersion", "s3:DeleteObject*"}:
                principal = statement["Principal"]["AWS"]["Fn::GetAtt"][0]
                assert _is_auto_delete_role(principal), statement


@pytest.mark.parametrize("stack", STACKS)
def test_DR5_noncurrent_versions_expire_after_the_documented_days(
    templates: dict[str, Any], stack: str
) -> None:
    rules = data_bucket(templates[stack])["LifecycleConfiguration"]["Rules"]
    (noncurrent,) = [r for r in rules if "NoncurrentVersionExpiration" in r]
    assert "Prefix" not in noncurrent  # every prefix: incoming/, processed/, failed/ ...
    assert noncurrent["NoncurrentVersionExpiration"] == {"NoncurrentDays": NONCURRENT_VERSION_DAYS}
    assert NONCURRENT_VERSION_DAYS >= 30
    # No rule expires current objects of the prefixes replication and recovery depend on.
    for rule in rules:
        if "ExpirationInDays" in rule:
            assert rule.get("Prefix") not in (None, "incoming/", "processed/", "failed/", "manifests/"), rule


# ---- SEC3: more explicit denies ----------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_SEC3_every_role_denies_version_deletes_bucket_config_changes_and_backup_deletes(
    templates: dict[str, Any], stack: str
) -> None:
    assert set(DENIED_ACTIONS) == SEC3_DENIED | INF11_DENIED
    template = templates[stack]
    roles = resources(template, "AWS::IAM::Role")
    kinds = {"auto-delete": 0, "custom-resource": 0, "replication": 0}
    for role_id, role in roles.items():
        denies = [s for s in _statements(template, role_id, "Deny") if s["Resource"] == "*"]
        denied = _actions(denies)
        if _is_auto_delete_role(role_id):
            kinds["auto-delete"] += 1
            # It must delete versions and set a bucket policy to empty the bucket (INF12).
            assert denied == (SEC3_DENIED | INF11_DENIED) - set(AUTO_DELETE_NEEDS), role_id
            continue
        if "AWS679f53fac002430cb0da5b7982bd2287" in role_id:
            kinds["custom-resource"] += 1
        if "s3.amazonaws.com" in str(props(role)["AssumeRolePolicyDocument"]):
            kinds["replication"] += 1
        assert denied >= SEC3_DENIED | INF11_DENIED, (role_id, denied)
    assert kinds["auto-delete"] == 1
    if stack == PRIMARY:
        assert kinds["custom-resource"] == 1 and kinds["replication"] == 2, kinds
    else:
        assert stack == DR


# ---- SEC1: one principal per partner -----------------------------------------------------------
ACCOUNT = "123456789012"
PARTNERS = {
    "acme_bank": "111122223333",
    "globex": {
        "principal": "arn:aws:iam::222233334444:role/uploader",
        "externalId": "globex-7f3",
        "schema": "default",
    },
}


@pytest.fixture(scope="module")
def partner_synth() -> Synth:
    """Two partners from context (the JSON-string form of ``-c partners=...``), cdk-nag on."""
    return synth({"environmentSuffix": SUFFIX, "partners": json.dumps(PARTNERS)})


class Policy:
    """A small IAM evaluator for the statements these tests meet: explicit Deny wins, then any
    Allow; actions and resources with ``*``/``?`` wildcards; a statement with a condition it
    does not know raises instead of guessing."""

    def __init__(self, statements: list[dict[str, Any]]) -> None:
        self.statements = statements

    @staticmethod
    def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
        for pattern in as_list(patterns):
            regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in str(pattern))
            if re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0):
                return True
        return False

    def _applies(self, statement: dict[str, Any], action: str, resource: str, principal: str | None) -> bool:
        if "Condition" in statement:
            raise AssertionError(f"teach the evaluator this condition: {statement['Condition']}")
        if (
            principal is not None
            and "Principal" in statement
            and not self._matches(statement["Principal"].get("AWS", []), principal, ignore_case=False)
        ):
            return False
        return self._matches(statement["Action"], action, ignore_case=True) and self._matches(
            statement["Resource"], resource, ignore_case=False
        )

    def decide(self, action: str, resource: str, principal: str | None = None) -> str:
        effects = {s["Effect"] for s in self.statements if self._applies(s, action, resource, principal)}
        return "Deny" if "Deny" in effects else "Allow" if "Allow" in effects else "ImplicitDeny"


def _partner_roles(template: dict[str, Any]) -> dict[str, str]:
    """Partner name -> role logical id."""
    found = {}
    for role_id, role in resources(template, "AWS::IAM::Role").items():
        name = text(props(role).get("RoleName", ""))
        if isinstance(name, str) and name.startswith("etl-partner-"):
            found[name[len("etl-partner-") : -len(f"-{SUFFIX}")]] = role_id
    return found


def _identity(template: dict[str, Any], role_id: str) -> Policy:
    return Policy([text(s) for s in role_statements(template, role_id)])


def _mrap(template: dict[str, Any]) -> tuple[str, Policy]:
    (mrap_id,) = resources(template, "AWS::S3::MultiRegionAccessPoint")
    (policy,) = resources(template, "AWS::S3::MultiRegionAccessPointPolicy").values()
    arn = f"arn:aws:s3::{ACCOUNT}:accesspoint/<{mrap_id}.Alias>"
    return arn, Policy([text(s) for s in props(policy)["Policy"]["Statement"]])


def _upload(
    template: dict[str, Any], partner: str, where: str, key: str, action: str = "s3:PutObject"
) -> str:
    """What AWS answers when ``partner``'s role calls ``action`` on ``key`` at ``where``
    (``mrap``: identity policy and access point policy must both allow; a bucket: the same
    account's identity policy decides)."""
    role_id = _partner_roles(template)[partner]
    identity = _identity(template, role_id)
    if where == "mrap":
        arn, mrap_policy = _mrap(template)
        resource = f"{arn}/object/{key}"
        own = identity.decide(action, resource)
        through = mrap_policy.decide(action, resource, principal=f"<{role_id}.Arn>")
        return (
            "Allow" if own == through == "Allow" else "Deny" if "Deny" in (own, through) else "ImplicitDeny"
        )
    return identity.decide(action, f"arn:aws:s3:::{where}/{key}")


PRIMARY_BUCKET = f"etl-data-{SUFFIX}-{ACCOUNT}-us-east-1"
DR_BUCKET = f"etl-data-{SUFFIX}-{ACCOUNT}-eu-west-1"


def test_SEC1_partner_role_writes_only_under_its_own_prefix(partner_synth: Synth) -> None:
    template = partner_synth.primary
    assert set(_partner_roles(template)) == {"acme_bank", "globex"}
    assert _partner_roles(partner_synth.dr) == {}  # IAM is global: one role, in the primary stack
    for where in ("mrap", PRIMARY_BUCKET, DR_BUCKET):
        assert _upload(template, "acme_bank", where, "incoming/acme_bank/2026-12-07.csv") == "Allow", where
        assert _upload(template, "acme_bank", where, "incoming/acme_bank/sub/a.csv.gz") == "Allow", where
        assert (
            _upload(template, "acme_bank", where, "incoming/acme_bank/x", "s3:AbortMultipartUpload")
            == "Allow"
        )
        # Partner A cannot write under B (nor a prefix that merely starts with its name) ...
        assert _upload(template, "acme_bank", where, "incoming/globex/2026-12-07.csv") != "Allow", where
        assert _upload(template, "globex", where, "incoming/acme_bank/2026-12-07.csv") != "Allow", where
        assert _upload(template, "acme_bank", where, "incoming/acme_bank_2/x.csv") != "Allow", where
        # ... nor outside incoming/, nor read, list or delete anything.
        for key in ("incoming/x.csv", "processed/acme_bank/x.csv", "announced/x", "tables/t/metadata/m.json"):
            assert _upload(template, "acme_bank", where, key) != "Allow", (where, key)
        for action in ("s3:GetObject", "s3:DeleteObject", "s3:ListBucket"):
            assert _upload(template, "acme_bank", where, "incoming/acme_bank/a.csv", action) != "Allow"
        # SEC3's explicit deny holds for the partner roles too.
        assert (
            _upload(template, "acme_bank", where, "incoming/acme_bank/a.csv", "s3:DeleteObjectVersion")
            == "Deny"
        )


def test_SEC1_partner_role_trust_is_its_account_with_an_external_id(partner_synth: Synth) -> None:
    roles = _partner_roles(partner_synth.primary)
    expected = {
        "acme_bank": ({"AWS": "arn:aws:iam::111122223333:root"}, f"etl-{SUFFIX}-acme_bank"),
        "globex": ({"AWS": "arn:aws:iam::222233334444:role/uploader"}, "globex-7f3"),
    }
    for name, role_id in roles.items():
        (trust,) = props(resources(partner_synth.primary)[role_id])["AssumeRolePolicyDocument"]["Statement"]
        principal, external_id = expected[name]
        assert text(trust["Principal"]) == principal
        assert trust["Action"] == "sts:AssumeRole"
        assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}


def test_SEC1_no_other_principal_is_granted_writes_under_incoming(
    partner_synth: Synth, primary: dict[str, Any]
) -> None:
    for template, partner_roles in (
        (partner_synth.primary, _partner_roles(partner_synth.primary)),
        (primary, {}),
    ):
        for role_id in resources(template, "AWS::IAM::Role"):
            if role_id in partner_roles.values():
                continue
            identity = _identity_lenient(template, role_id)
            for bucket in (PRIMARY_BUCKET, DR_BUCKET, f"<{data_bucket_id_of(template)}.Arn>"):
                resource = (
                    f"arn:aws:s3:::{bucket}/incoming/acme_bank/f.csv"
                    if not bucket.startswith("<")
                    else f"{bucket}/incoming/acme_bank/f.csv"
                )
                assert identity.decide("s3:PutObject", resource) != "Allow", role_id
        for policy in resources(template, "AWS::S3::BucketPolicy").values():
            for statement in props(policy)["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Allow":
                    assert not {"s3:PutObject", "s3:*", "s3:Put*"} & set(as_list(statement["Action"])) or (
                        "incoming/" not in json.dumps(statement["Resource"])
                        and statement.get("Principal", {}).get("Service") == "logging.s3.amazonaws.com"
                    ), statement
    # The access point policy names the partner roles only, never the account.
    _, mrap_policy = _mrap(partner_synth.primary)
    principals = {str(s["Principal"]["AWS"]) for s in mrap_policy.statements}
    assert principals == {f"<{rid}.Arn>" for rid in _partner_roles(partner_synth.primary).values()}
    # Without partners there is no access point policy at all: S3 refuses every upload through it.
    assert not resources(primary, "AWS::S3::MultiRegionAccessPointPolicy")


def _identity_lenient(template: dict[str, Any], role_id: str) -> Policy:
    """A role's statements without conditions (a condition only narrows an Allow: dropping it
    can only make this check stricter)."""
    return Policy(
        [{k: v for k, v in text(s).items() if k != "Condition"} for s in role_statements(template, role_id)]
    )


def data_bucket_id_of(template: dict[str, Any]) -> str:
    (lid,) = [
        lid
        for lid, r in resources(template, "AWS::S3::Bucket").items()
        if str(text(props(r)["BucketName"])).startswith("etl-data-")
    ]
    return lid


def test_SEC1_partners_context_is_validated() -> None:
    for bad, message in (
        ('{"Acme": "111122223333"}', "partner name"),
        ('{"acme_bank": "1234"}', "12-digit account id"),
        ('{"acme_bank": {"principal": "111122223333", "schema": "mine"}}', "schema must be"),
        ('{"nobody": "111122223333"}', "no schema file"),
        ("[1, 2]", "must be an object"),
        ("{not json", "not valid JSON"),
    ):
        with pytest.raises(ConfigError, match=message):
            EtlConfig(partners=parse_partners(bad))
    parsed = parse_partners(json.dumps(PARTNERS))
    assert [(p.name, p.account, p.schema) for p in parsed] == [
        ("acme_bank", "111122223333", "own"),
        ("globex", "222233334444", "default"),
    ]
    assert EtlConfig(partners=parsed).default_schema_partners == ("globex",)


# ---- SEC2: the declared default-schema partners reach the header step and the CLI -------------
def test_SEC2_default_schema_partners_reach_validate_header_and_the_outputs(
    partner_synth: Synth, primary: dict[str, Any]
) -> None:
    for template, expected in (
        (partner_synth.primary, "globex"),
        (partner_synth.dr, "globex"),
        (primary, ""),
    ):
        (fn,) = [
            r
            for r in resources(template, "AWS::Lambda::Function").values()
            if str(text(props(r).get("FunctionName", ""))).startswith("etl-validate-header-")
        ]
        assert props(fn)["Environment"]["Variables"]["DEFAULT_SCHEMA_PARTNERS"] == expected
        outputs = template["Outputs"]
        assert json.loads(outputs["DefaultSchemaPartners"]["Value"]) == ([expected] if expected else [])


# ---- SEC4: every function, CDK-internal ones included, has a 30-day log group ------------------
@pytest.mark.parametrize("stack", STACKS)
def test_SEC4_every_function_logs_to_a_30_day_destroyable_log_group(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    groups = resources(template, "AWS::Logs::LogGroup")
    for lid, fn in resources(template, "AWS::Lambda::Function").items():
        target = props(fn).get("LoggingConfig", {}).get("LogGroup")
        assert target is not None, f"{lid} logs to a group CloudFormation does not own"
        (group_id,) = [
            g
            for g in groups
            if target == {"Ref": g} or text(target) == text(props(groups[g])["LogGroupName"])
        ]
        assert props(groups[group_id])["RetentionInDays"] == 30, lid
        assert groups[group_id]["DeletionPolicy"] == "Delete", lid
    provider = [lid for lid in resources(template, "AWS::Lambda::Function") if "AutoDeleteObjects" in lid]
    assert len(provider) == 1


# ---- DR7: safe defaults at deploy --------------------------------------------------------------
def _sdk_calls(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Custom::AWS resources by their create call's action: properties, create call."""
    calls = {}
    for r in resources(template, "Custom::AWS").values():
        create = json.loads(text(props(r)["Create"]))
        calls[create["action"]] = {"properties": props(r), "create": create}
    return calls


def test_DR7_access_point_routes_100_percent_primary_once_at_creation(
    primary: dict[str, Any], dr: dict[str, Any]
) -> None:
    call = _sdk_calls(primary)["submitMultiRegionAccessPointRoutes"]
    (mrap_id,) = resources(primary, "AWS::S3::MultiRegionAccessPoint")
    assert call["create"]["region"] == "us-west-2"  # the failover control plane the CLI uses too
    parameters = call["create"]["parameters"]
    assert parameters["Mrap"] == f"arn:aws:s3::{ACCOUNT}:accesspoint/<{mrap_id}.Alias>"
    assert [(r["Region"], r["TrafficDialPercentage"]) for r in parameters["RouteUpdates"]] == [
        ("us-east-1", 100),
        ("eu-west-1", 0),
    ]
    assert parameters["RouteUpdates"][1]["Bucket"] == DR_BUCKET
    # Create only: a routine deploy (an update) never flips a failover back (DR3).
    assert "Update" not in call["properties"] and "Delete" not in call["properties"]
    assert "submitMultiRegionAccessPointRoutes" not in _sdk_calls(dr)


def test_DR7_standby_alarms_start_with_actions_off_once_at_creation(
    primary: dict[str, Any], dr: dict[str, Any]
) -> None:
    call = _sdk_calls(dr)["disableAlarmActions"]
    alarms = resources(dr, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 5
    assert sorted(call["create"]["parameters"]["AlarmNames"]) == sorted(f"<{lid}>" for lid in alarms)
    assert "Update" not in call["properties"] and "Delete" not in call["properties"]
    assert "disableAlarmActions" not in _sdk_calls(primary)  # the primary pages from day one
