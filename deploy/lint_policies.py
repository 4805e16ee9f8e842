#!/usr/bin/env python3
"""Lints every IAM policy document of fle's CloudFormation templates with parliament.

    python3 deploy/lint_policies.py deploy/*.yaml

Policies inside templates are not plain JSON: they hold !Ref, !Sub, !GetAtt and !If. This
script resolves them the way CloudFormation would, for every combination of the template's
conditions (so both sides of each !If are linted), with sample parameter values, then hands
each resulting document (key policies, trust policies, inline and managed policies) to
parliament, community auditors included.

Every finding must be in EXPLAINED below, with the reason it is accepted; anything else is
printed and makes the exit code 1. An explanation that no longer matches any finding also
fails the run, so the list cannot go stale.
"""

import itertools
import json
import re
import sys

import cfnlint.decode
from parliament import analyze_policy_string

ACCOUNT = "111122223333"
REGION = "us-east-1"
SAMPLE_PARAMETERS = {
    "KeyAdminArns": [f"arn:aws:iam::{ACCOUNT}:role/fle-deployer"],
    "BuildRoleArn": f"arn:aws:iam::{ACCOUNT}:role/fle-deployer",
    "DecryptRoleArns": [f"arn:aws:iam::{ACCOUNT}:role/fle-decrypt-role-{REGION}"],
    "KeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "OrganizationId": "o-a1b2c3d4e5",
    "PartnerAccountId": "444455556666",
    "ExternalId": "sample-external-id-0123456789",
    "EdgeArtifactBucket": "fle-artifacts-us-east-1",
    "DecryptArtifactBucket": "fle-artifacts-eu-west-1",
    "CodeS3Bucket": "fle-artifacts",
    "CodeS3Key": "fle/package.zip",
    "CodeSha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "OriginDomainName": "api.example.com",
}

# (template, policy location, parliament issue) -> (the actions the finding may name, or None
# for a finding about the whole document; why it is accepted). A finding naming any other action
# is unexplained.
EXPLAINED = {
    ("key.yaml", "Key.KeyPolicy", "RESOURCE_STAR"): (None,
        "A key policy is attached to its one key: Resource \"*\" there means this key only "
        "(the only value KMS accepts in a key policy)."),
    ("key.yaml", "Key.KeyPolicy", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"kms:putkeypolicy", "kms:revokegrant"},
        "Key administrators change the key policy and revoke grants: that is what administering "
        "a key means. They hold no use of the key (no Decrypt, DeriveSharedSecret, GetPublicKey "
        "or CreateGrant), but PutKeyPolicy could give it back: keep the list short and alert on "
        "PutKeyPolicy in CloudTrail (deploy/README.md)."),
    ("deployer.yaml", "DeployerPolicy.PolicyDocument", "RESOURCE_MISMATCH"): (
        {"kms:createalias", "kms:updatealias", "kms:deletealias"},
        "Alias operations need the alias and the key. The alias side is here (alias/fle*); the "
        "key side comes from the key's own policy, which grants it to KeyAdminArns only (the "
        "deployer among them), so this policy needs no key/* resource."),
    ("deployer.yaml", "DeployerPolicy.PolicyDocument", "PRIVILEGE_ESCALATION"): (
        {"lambda:updatefunctioncode"},
        "The deployer ships the code that runs under the fle-* roles, the decrypt function's "
        "kms:Decrypt included: whoever deploys fle is trusted with what its functions can do. "
        "Every fle-* role carries the fle-role-boundary permissions boundary, so that code can "
        "at most decrypt and write logs. Run deployments from a pipeline (deploy/README.md)."),
    ("deployer.yaml", "DeployerPolicy.PolicyDocument", "UNKNOWN_ACTION"): (
        {"lambda:getfunctionscalingconfig"},
        "An action newer than parliament's action list (1.6.4); CloudFormation's own resource "
        "schema lists it for reading an AWS::Lambda::Function, and cfn-lint knows it."),
    ("decrypt.yaml", "ExecutionRole.AssumeRolePolicyDocument", "CREDENTIALS_EXPOSURE"): (
        {"sts:assumerole"},
        "A trust policy's one action is sts:AssumeRole; here only lambda.amazonaws.com, for "
        "functions of this account (aws:SourceAccount)."),
    ("edge.yaml", "ExecutionRole.AssumeRolePolicyDocument", "CREDENTIALS_EXPOSURE"): (
        {"sts:assumerole"},
        "A trust policy's one action is sts:AssumeRole; here only the Lambda and Lambda@Edge "
        "services, as Lambda@Edge requires."),
    ("partner-access.yaml", "PartnerDecryptRole.AssumeRolePolicyDocument", "CREDENTIALS_EXPOSURE"): (
        {"sts:assumerole"},
        "This role exists to be assumed by the partner account, only with the agreed "
        "sts:ExternalId; its credentials may decrypt with one key and nothing else."),
    ("deployer.yaml", "DeployerPolicy.PolicyDocument", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"iam:createrole", "iam:putrolepolicy", "iam:deleterolepolicy", "iam:detachrolepolicy",
         "iam:deleterole", "iam:updaterole", "iam:updateroledescription",
         "iam:updateassumerolepolicy", "iam:tagrole", "iam:untagrole", "iam:passrole",
         "iam:createservicelinkedrole", "lambda:addpermission", "lambda:removepermission",
         "logs:putretentionpolicy", "logs:deleteretentionpolicy", "logs:tagresource",
         "logs:untagresource", "lambda:tagresource", "lambda:untagresource",
         "cloudfront:tagresource", "cloudfront:untagresource", "lambda:enablereplication",
         "lambda:disablereplication", "kms:createkey"},
        "Deploying creates the stacks' roles and their inline policies, the functions' resource "
        "policies and tags, and the key (kms:CreateKey, limited by conditions to fle's key specs; "
        "the key's own policy then names its administrators): that is the job. Roles only as "
        "role/fle-*, created or given policies "
        "only with the fle-role-boundary permissions boundary; iam:PassRole only to "
        "lambda.amazonaws.com; the two Lambda@Edge service-linked roles by name."),
}


def without_actions(doc, actions):
    """doc with the named actions (lower case) removed from every statement."""
    out = dict(doc)
    out["Statement"] = []
    for statement in doc["Statement"]:
        statement = dict(statement)
        if "Action" in statement:
            kept = [a for a in (statement["Action"] if isinstance(statement["Action"], list)
                                else [statement["Action"]]) if a.lower() not in actions]
            if not kept:
                continue
            statement["Action"] = kept
        out["Statement"].append(statement)
    return out


def finding_actions(finding):
    """The actions a parliament finding names (lower case), or None when it names none."""
    found = set()
    location = finding.location if isinstance(finding.location, dict) else {}
    found.update(a.lower() for a in location.get("actions", []) if isinstance(a, str))
    detail = finding.detail
    if isinstance(detail, list):
        found.update(d["action"].lower() for d in detail if isinstance(d, dict) and "action" in d)
    elif isinstance(detail, str):
        found.update(m.lower() for m in re.findall(r"[Uu]nknown action (\S+)", detail))
    return found or None


def resolve(node, params, conditions, resources):
    """Resolves intrinsic functions in node for one assignment of the conditions."""
    if isinstance(node, list):
        out = []
        for item in node:
            value = resolve(item, params, conditions, resources)
            if value is not NO_VALUE:
                out.append(value)
        return out
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            if arg in PSEUDO:
                return PSEUDO[arg]
            if arg in params:
                value = params[arg]
                # Policy documents hold strings (CloudFormation writes a number parameter as one).
                return value if isinstance(value, (str, list)) else str(value)
            return f"arn:aws:sample:{REGION}:{ACCOUNT}:{arg}"
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            extra = {} if isinstance(arg, str) else arg[1]
            values = dict(PSEUDO)
            values.update({k: v for k, v in params.items() if isinstance(v, str)})
            values.update({k: resolve(v, params, conditions, resources) for k, v in extra.items()})
            for name in resources:
                values.setdefault(name, f"arn:aws:sample:{REGION}:{ACCOUNT}:{name}")
            for name, value in values.items():
                text = text.replace("${" + name + "}", str(value))
            assert "${" not in text, f"unresolved substitution in {text}"
            return text
        if key == "Fn::GetAtt":
            name = arg[0] if isinstance(arg, list) else arg.split(".")[0]
            if name == "LogGroup":
                return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/fle-decrypt:*"
            return f"arn:aws:sample:{REGION}:{ACCOUNT}:{name}"
        if key == "Fn::If":
            chosen = arg[1] if conditions[arg[0]] else arg[2]
            return resolve(chosen, params, conditions, resources)
    return {k: v for k, v in ((k, resolve(v, params, conditions, resources)) for k, v in node.items())
            if v is not NO_VALUE}


NO_VALUE = object()
PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION,
          "AWS::StackName": "fle-sample"}


def policies_of(name, resource):
    """(location, document) of every policy document a resource holds."""
    kind, props = resource.get("Type"), resource.get("Properties", {})
    if kind == "AWS::KMS::Key":
        yield f"{name}.KeyPolicy", props["KeyPolicy"]
    elif kind == "AWS::IAM::Role":
        # A trust policy is the role's resource policy: its resource is the role itself,
        # which parliament needs to check the actions and condition keys.
        trust = dict(props["AssumeRolePolicyDocument"])
        trust["Statement"] = [dict(s, Resource=f"arn:aws:iam::{ACCOUNT}:role/{name}")
                              for s in trust["Statement"]]
        yield f"{name}.AssumeRolePolicyDocument", trust
        for policy in props.get("Policies", []):
            yield f"{name}.Policies.{policy['PolicyName']}", policy["PolicyDocument"]
    elif kind == "AWS::IAM::ManagedPolicy":
        yield f"{name}.PolicyDocument", props["PolicyDocument"]


def main(paths):
    unexplained, used, documents = [], set(), 0
    for path in paths:
        template, matches = cfnlint.decode.decode(path)
        if matches:
            sys.exit(f"{path}: cannot parse: {matches}")
        short = path.rsplit("/", 1)[-1]
        params = {}
        for pname, spec in template.get("Parameters", {}).items():
            if pname in SAMPLE_PARAMETERS:
                params[pname] = SAMPLE_PARAMETERS[pname]
            elif "Default" in spec:
                params[pname] = spec["Default"]
            else:
                sys.exit(f"{short}: no sample value for parameter {pname}")
        names = list(template.get("Conditions", {}))
        resources = template.get("Resources", {})
        seen = set()
        for values in itertools.product([True, False], repeat=len(names)):
            conditions = dict(zip(names, values))
            for rname, resource in resources.items():
                if "Condition" in resource and not conditions[resource["Condition"]]:
                    continue
                for location, raw in policies_of(rname, resource):
                    doc = resolve(raw, params, conditions, resources)
                    text = json.dumps(doc, sort_keys=True)
                    if (location, text) in seen:
                        continue
                    seen.add((location, text))
                    documents += 1
                    findings = analyze_policy_string(text, include_community_auditors=True).findings
                    # parliament stops short on a document with an action it does not know: lint
                    # it again without those actions (each must be explained), so every other
                    # auditor still runs on the rest.
                    unknown = set().union(*(finding_actions(f) or set() for f in findings
                                            if f.issue == "UNKNOWN_ACTION"))
                    if unknown:
                        findings = [f for f in findings if f.issue == "UNKNOWN_ACTION"] + \
                            analyze_policy_string(json.dumps(without_actions(doc, unknown)),
                                                  include_community_auditors=True).findings
                    for finding in findings:
                        key = (short, location, finding.issue)
                        actions = finding_actions(finding)
                        allowed = EXPLAINED.get(key, (set(), None))[0]
                        if key in EXPLAINED and (allowed is None or (actions and actions <= allowed)):
                            used.add(key)
                        else:
                            unexplained.append(f"{short} {location} {finding.issue}: "
                                               f"{finding.detail} {finding.location}")
    stale = [k for k in EXPLAINED if k not in used and k[0] in {p.rsplit('/', 1)[-1] for p in paths}]
    print(f"parliament: {documents} policy documents in {len(paths)} templates, "
          f"{len(used)} explained findings, {len(unexplained)} unexplained")
    for line in unexplained:
        print(f"UNEXPLAINED {line}")
    for key in stale:
        print(f"STALE explanation (no such finding any more): {key}")
    return 1 if unexplained or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
