#!/usr/bin/env python3
"""Checks what deploy/deploy.sh created on loopback (tests/deploy.rs runs it).

    deploy_check.py key      ENDPOINT REGION PREFIX EXPECT.json   # LocalStack: KMS key, alias, key policy, partner role
    deploy_check.py packages ENDPOINT KEY_ARN BUILD_DIR            # the two zips: contents, limits, the embedded public key
    deploy_check.py lambdas  ENDPOINT REGION PREFIX EXPECT.json    # moto: decrypt and edge functions, roles, permission, logs
    deploy_check.py static   DEPLOY_DIR                            # what no local service can create: read from the templates

Every check is an assertion with a message; the script prints one line per check group and
exits non-zero on the first failure. It never prints a secret (the external ID is compared,
not shown).
"""

import ast
import base64
import hashlib
import io
import json
import stat
import sys
import tomllib
import zipfile

import boto3

# Lambda@Edge limits (CloudFront quotas): a viewer-request package may be 1 MB, an
# origin-request one 50 MB. fle's package must fit the stricter one.
EDGE_ZIP_LIMIT = 1_000_000
KEY_USES = {"kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GetPublicKey",
            "kms:DeriveSharedSecret", "kms:CreateGrant", "kms:Sign", "kms:Verify",
            "kms:GenerateDataKey", "kms:GenerateDataKeyPair"}


def client(service, endpoint, region):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="test", aws_secret_access_key="test")


def listify(value):
    return value if isinstance(value, list) else [value]


def statements(policy):
    doc = json.loads(policy) if isinstance(policy, str) else policy
    return {s.get("Sid"): s for s in doc["Statement"]}


def check_key(endpoint, region, prefix, expect):
    kms, cfn, iam = (client(s, endpoint, region) for s in ("kms", "cloudformation", "iam"))
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cfn.describe_stacks(StackName=f"{prefix}-key")["Stacks"][0]["Outputs"]}
    arn = outputs["KeyArn"]
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    rsa = expect["key_spec"] != "ECC_NIST_P256"
    assert meta["KeySpec"] == expect["key_spec"], meta["KeySpec"]
    assert meta["KeyUsage"] == ("ENCRYPT_DECRYPT" if rsa else "KEY_AGREEMENT"), meta["KeyUsage"]
    assert meta["KeyState"] == "Enabled", meta["KeyState"]
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=arn)["Aliases"]}
    assert aliases.get(expect["alias"]) == meta["KeyId"], aliases

    policy = statements(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    admin = policy["KeyAdministrationWithoutUse"]
    assert listify(admin["Principal"]["AWS"]) == expect["admins"], admin["Principal"]
    used = KEY_USES & set(listify(admin["Action"]))
    assert not used, f"key administrators may use the key: {used}"
    assert not any("*" in a for a in listify(admin["Action"])), admin["Action"]
    assert "kms:ScheduleKeyDeletion" not in listify(admin["Action"]), "deletion without the window condition"
    deletion = policy["KeyDeletionWaitsThePendingWindow"]
    assert listify(deletion["Action"]) == ["kms:ScheduleKeyDeletion"], deletion
    assert listify(deletion["Principal"]["AWS"]) == expect["admins"], deletion
    window = deletion["Condition"]["NumericGreaterThanEquals"]["kms:ScheduleKeyDeletionPendingWindowInDays"]
    assert str(window) == "30", deletion
    build = policy["BuildRoleExportsThePublicKey"]
    assert listify(build["Action"]) == ["kms:GetPublicKey"], build["Action"]
    assert listify(build["Principal"]["AWS"]) == [expect["build_role"]], build["Principal"]

    sid, action, condition = (("DecryptingRolesDecrypt", "kms:Decrypt",
                               {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}) if rsa else
                              ("DecryptingRolesDeriveSharedSecret", "kms:DeriveSharedSecret",
                               {"kms:KeyAgreementAlgorithm": "ECDH"}))
    decrypt = policy[sid]
    assert listify(decrypt["Action"]) == [action], decrypt["Action"]
    assert decrypt["Condition"]["StringEquals"] == condition, decrypt["Condition"]
    assert sorted(listify(decrypt["Condition"]["ArnEquals"]["aws:PrincipalArn"])) == \
        sorted(expect["decrypt_roles"]), decrypt["Condition"]
    account = arn.split(":")[4]
    assert decrypt["Principal"]["AWS"] == f"arn:aws:iam::{account}:root", decrypt["Principal"]
    org_sid = "OrganizationDecrypts" if rsa else "OrganizationDerivesSharedSecret"
    if expect.get("org"):
        org = policy[org_sid]
        assert listify(org["Action"]) == [action], org["Action"]
        assert org["Condition"]["StringEquals"] == dict(condition, **{"aws:PrincipalOrgID": expect["org"]}), org
        # The key's own account decrypts only through the decrypting roles.
        assert org["Condition"]["StringNotEquals"] == {"aws:PrincipalAccount": account}, org
    else:
        assert org_sid not in policy, "organisation statement without an organisation id"
    extra = set(policy) - {"KeyAdministrationWithoutUse", "KeyDeletionWaitsThePendingWindow",
                           "BuildRoleExportsThePublicKey", sid, org_sid}
    assert not extra, f"unexpected key policy statements: {extra}"
    print(f"key: {meta['KeySpec']} {meta['KeyUsage']}, alias {expect['alias']}, "
          f"{len(policy)} policy statements as designed")

    if expect.get("partner_account"):
        stack = cfn.describe_stacks(StackName=f"{prefix}-partner")["Stacks"][0]
        role_arn = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["RoleArn"]
        role = iam.get_role(RoleName=role_arn.split("/")[-1])["Role"]
        assert_boundary(role, expect["boundary"])
        trust = role["AssumeRolePolicyDocument"]
        trust = document(trust)
        [statement] = trust["Statement"]
        assert statement["Principal"] == {"AWS": f"arn:aws:iam::{expect['partner_account']}:root"}, statement
        assert statement["Action"] == "sts:AssumeRole", statement
        external = statement["Condition"]["StringEquals"]["sts:ExternalId"]
        assert external == expect["external_id"], "the trust policy's sts:ExternalId is not the agreed one"
        names = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
        assert names == ["fle-decrypt-one-key"], names
        doc = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=names[0])["PolicyDocument"]
        [only] = document(doc)["Statement"]
        assert listify(only["Action"]) == [action] and only["Resource"] == arn, only
        assert only["Condition"]["StringEquals"] == condition, only
        assert role_arn in expect["decrypt_roles"], "the partner role is not among the key's decrypting roles"
        print(f"partner role: {role['RoleName']}, assumable by {expect['partner_account']} "
              f"with the agreed external ID only, {action} on the key only")


def assert_boundary(role, boundary):
    got = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    assert got == boundary, f"role {role['RoleName']}: permissions boundary {got}, expected {boundary}"


def check_packages(endpoint, key_arn, build_dir):
    region = key_arn.split(":")[3]
    der = client("kms", endpoint, region).get_public_key(KeyId=key_arn)["PublicKey"]

    def spki_of(pem):
        body = "".join(line for line in pem.strip().splitlines() if "-----" not in line)
        return base64.b64decode(body)

    path = f"{build_dir}/fle-lambda-edge.zip"
    data = open(path, "rb").read()
    assert len(data) <= EDGE_ZIP_LIMIT, f"{path}: {len(data)} bytes, over {EDGE_ZIP_LIMIT}"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["fle.toml", "fle_edge.wasm", "index.mjs"], z.namelist()
        config = tomllib.loads(z.read("fle.toml").decode())
        loader = z.read("index.mjs").decode()
    [key] = config["keys"]
    assert "public_key_pem" in key and "public_key" not in key, "the edge package must embed its key"
    assert spki_of(key["public_key_pem"]) == der, "the edge package's key is not the KMS key's public key"
    assert "kms_key_id" not in key, "the edge package names a KMS key (it must need no KMS at all)"
    assert config["edge"]["fields"], config["edge"]
    assert "export async function handler" in loader or "export const handler" in loader, \
        "index.mjs exports no handler"
    print(f"edge package: {len(data)} bytes (limit {EDGE_ZIP_LIMIT}), index.mjs + fle_edge.wasm + "
          f"fle.toml, embedded SPKI = KMS GetPublicKey ({len(der)} bytes)")

    path = f"{build_dir}/fle-decrypt-lambda.zip"
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        assert names == ["bootstrap", "fle.toml", f"keys/{key['id']}.pub.pem"], names
        mode = z.getinfo("bootstrap").external_attr >> 16
        assert mode & stat.S_IXUSR, f"bootstrap is not executable ({oct(mode)})"
        head = z.read("bootstrap")[:20]
        assert head[:4] == b"\x7fELF", "bootstrap is not an ELF executable"
        assert int.from_bytes(head[18:20], "little") == 62, "bootstrap is not an x86_64 executable"
        config = tomllib.loads(z.read("fle.toml").decode())
        pem = z.read(f"keys/{key['id']}.pub.pem").decode()
    [dkey] = config["keys"]
    assert dkey["kms_key_id"] == key_arn, dkey
    assert spki_of(pem) == der, "the decrypt package's public key is not the KMS key's"
    assert config["decrypt"]["fields"] == config_fields(build_dir), config["decrypt"]
    print(f"decrypt package: bootstrap (ELF, executable), fle.toml with kms_key_id, the same SPKI; "
          f"decrypts only {config['decrypt']['fields']}")


def config_fields(build_dir):
    return tomllib.load(open(f"{build_dir}/edge/fle.toml", "rb"))["edge"]["fields"]


def document(doc):
    """A policy document as IAM returns it: a dict (boto3 decodes AWS's JSON), or, from moto's
    server for policies CloudFormation created, the text of a Python dict."""
    if not isinstance(doc, str):
        return doc
    try:
        return json.loads(doc)
    except json.JSONDecodeError:
        return ast.literal_eval(doc)


def inline_policies(iam, role_name):
    return {name: document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
            for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]}


def code_sha256(path):
    """A package's SHA-256 as Lambda reports it (CodeSha256: base64)."""
    return base64.b64encode(hashlib.sha256(open(path, "rb").read()).digest()).decode()


def check_lambdas(endpoint, region, prefix, expect):
    lam, iam, logs, cfn = (client(s, endpoint, region) for s in ("lambda", "iam", "logs", "cloudformation"))
    rsa = expect["key_spec"] != "ECC_NIST_P256"
    action = "kms:Decrypt" if rsa else "kms:DeriveSharedSecret"

    fn = lam.get_function(FunctionName=expect["decrypt_function"])
    conf = fn["Configuration"]
    assert conf["Runtime"] == "provided.al2023" and conf["Handler"] == "bootstrap", conf
    assert not conf.get("Environment", {}).get("Variables"), "the decrypt function has environment variables"
    assert conf["CodeSha256"] == code_sha256(f"{expect['build_dir']}/fle-decrypt-lambda.zip"), \
        "the deployed decrypt code is not the package built"
    role_name = conf["Role"].split("/")[-1]
    assert role_name == f"{expect['decrypt_function']}-role-{region}", role_name
    role = iam.get_role(RoleName=role_name)["Role"]
    assert_boundary(role, expect["boundary"])
    trust = role["AssumeRolePolicyDocument"]
    trust = document(trust)
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}], trust
    policies = inline_policies(iam, role_name)
    assert list(policies) == ["fle-decrypt"], list(policies)
    granted = {(a, s["Resource"]) for s in policies["fle-decrypt"]["Statement"] for a in listify(s["Action"])}
    kms_grants = {g for g in granted if g[0].startswith("kms:")}
    assert kms_grants == {(action, expect["key_arn"])}, f"decrypt role KMS grants: {kms_grants}"
    assert {g[0] for g in granted} == {action, "logs:CreateLogStream", "logs:PutLogEvents"}, granted
    group = f"/aws/lambda/{expect['decrypt_function']}"
    [lg] = [g for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] if g["logGroupName"] == group]
    assert lg["retentionInDays"] == expect["log_retention"], lg
    assert all(r.startswith(f"arn:aws:logs:{region}:") and group in r
               for a, r in granted if a.startswith("logs:")), granted
    if expect.get("org"):
        policy = statements(lam.get_policy(FunctionName=expect["decrypt_function"])["Policy"])
        [invoke] = policy.values()
        assert invoke["Action"] == "lambda:InvokeFunction" and invoke["Principal"] == "*", invoke
        assert invoke["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": expect["org"]}}, invoke
        who = f"invocable by organisation {expect['org']}"
    else:
        try:
            policy = lam.get_policy(FunctionName=expect["decrypt_function"])["Policy"]
            raise AssertionError(f"a resource policy without an organisation: {policy}")
        except lam.exceptions.ResourceNotFoundException:
            who = "no resource policy"
    print(f"decrypt function: provided.al2023, the built package, role with {action} on the key only "
          f"and its own log group ({lg['retentionInDays']} days), within the boundary; {who}")

    # Lambda@Edge functions live in us-east-1.
    lam, iam = client("lambda", endpoint, "us-east-1"), client("iam", endpoint, "us-east-1")
    fn = lam.get_function(FunctionName=expect["edge_function"])
    conf = fn["Configuration"]
    assert conf["Runtime"] == "nodejs22.x" and conf["Handler"] == "index.handler", conf
    assert not conf.get("Environment", {}).get("Variables"), "Lambda@Edge functions may not have environment variables"
    assert conf.get("Architectures", ["x86_64"]) == ["x86_64"], conf.get("Architectures")
    assert conf["CodeSha256"] == code_sha256(f"{expect['build_dir']}/fle-lambda-edge.zip"), \
        "the deployed edge code is not the package built"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=expect["edge_function"])["Versions"]]
    assert any(v != "$LATEST" for v in versions), f"no published version: {versions}"
    role_name = conf["Role"].split("/")[-1]
    role = iam.get_role(RoleName=role_name)["Role"]
    assert_boundary(role, expect["boundary"])
    trust = document(role["AssumeRolePolicyDocument"])
    services = sorted(listify(trust["Statement"][0]["Principal"]["Service"]))
    assert services == ["edgelambda.amazonaws.com", "lambda.amazonaws.com"], services
    logs_actions = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    statements_ = [s for doc in inline_policies(iam, role_name).values() for s in doc["Statement"]]
    actions = {a for s in statements_ if s["Effect"] == "Allow" for a in listify(s["Action"])}
    assert not any(a.startswith("kms:") or a == "*" for a in actions), f"edge role actions: {actions}"
    assert actions == logs_actions, actions
    denies = [s for s in statements_ if s["Effect"] == "Deny"]
    assert [(set(listify(s["NotAction"])), s["Resource"]) for s in denies] == [(logs_actions, "*")], \
        f"the edge role must deny everything but its logs: {denies}"
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    assert not attached, f"edge role has managed policies: {attached}"
    print(f"edge function: nodejs22.x, no environment, the built package, version(s) {versions}, "
          f"role with logs only ({sorted(actions)}) and an explicit deny of everything else, within the boundary")


def check_static(deploy_dir):
    """What LocalStack and moto cannot create (CloudFront, Lambda@Edge, retention on deletion),
    read from the templates themselves."""
    import cfnlint.decode

    def load(name):
        template, matches = cfnlint.decode.decode(f"{deploy_dir}/{name}")
        assert not matches, matches
        return template

    key = load("key.yaml")["Resources"]["Key"]
    assert key.get("DeletionPolicy") == "Retain" and key.get("UpdateReplacePolicy") == "Retain", key
    window = load("key.yaml")["Parameters"]["PendingWindowInDays"]
    assert window["Default"] == 30 and window["MinValue"] == 7, window

    edge = load("edge.yaml")
    rules = json.dumps(edge["Rules"])
    assert "us-east-1" in rules and "AWS::Region" in rules, "the edge stack must refuse other regions"
    function = edge["Resources"]["Function"]["Properties"]
    assert "Environment" not in function, "Lambda@Edge functions may not have environment variables"
    assert function["Architectures"] == ["x86_64"], function["Architectures"]
    assert function["Handler"] == "index.handler", function["Handler"]
    runtime = edge["Parameters"]["Runtime"]
    assert runtime["Default"] == "nodejs22.x" and "nodejs20.x" not in runtime["AllowedValues"], runtime
    assert edge["Parameters"]["Timeout"]["MaxValue"] <= 30, "origin-request functions run 30 s at most"
    version = edge["Resources"]["Version"]["Properties"]
    assert version["CodeSha256"] == {"Ref": "CodeSha256"}, "a new package must publish a new version"
    behaviour = edge["Resources"]["Distribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
    [association] = behaviour["LambdaFunctionAssociations"]
    assert association == {"EventType": "origin-request", "IncludeBody": True,
                           "LambdaFunctionARN": {"Ref": "Version"}}, association
    assert {"POST", "PUT", "PATCH"} <= set(behaviour["AllowedMethods"]), behaviour["AllowedMethods"]
    assert behaviour["ViewerProtocolPolicy"] == "https-only", behaviour["ViewerProtocolPolicy"]
    assert behaviour["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", "CachingDisabled"
    [origin] = edge["Resources"]["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only", origin

    check_deployer_covers_the_schemas(deploy_dir, load)

    decrypt = load("decrypt.yaml")["Resources"]["Function"]["Properties"]
    assert decrypt["Runtime"] == "provided.al2023" and "Environment" not in decrypt, decrypt
    print("static: key retained on stack deletion (30-day window, at least 7); edge stack us-east-1 only, "
          "no environment, x86_64, nodejs22.x default, a new version per package; distribution: "
          "origin-request with body, POST/PUT/PATCH allowed, HTTPS only to viewer and origin, no caching")


# What CloudFormation's resource schemas (cfn-lint's copy) say their handlers may call, but the
# deployer policy does not grant, and why that is right for these templates.
NOT_NEEDED = {
    **{a: "VPC and file systems are not used" for a in (
        "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
        "ec2:DescribeNetworkInterfaces", "elasticfilesystem:DescribeMountTargets",
        "s3files:ListMountTargets")},
    **{a: "no KmsKeyArn on the functions (no environment variables to encrypt)" for a in (
        "kms:CreateGrant", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")},
    **{a: "a setting the templates do not use (concurrency, code signing, layers, runtime "
          "management, recursion, scaling, capacity providers, provisioned concurrency)" for a in (
        "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency",
        "lambda:GetCodeSigningConfig", "lambda:PutFunctionCodeSigningConfig",
        "lambda:DeleteFunctionCodeSigningConfig", "lambda:GetLayerVersion",
        "lambda:PutRuntimeManagementConfig", "lambda:PutFunctionRecursionConfig",
        "lambda:PutFunctionScalingConfig", "lambda:PassCapacityProvider",
        "lambda:AssociateRuntimeAlias", "lambda:PutProvisionedConcurrencyConfig")},
    "s3:GetObjectVersion": "no S3ObjectVersion: packages are content-addressed keys",
    "iam:AttachRolePolicy": "no managed policies on the roles (inline policies only)",
    "iam:PutRolePermissionsBoundary": "by design the deployer cannot change a role's boundary",
    "iam:DeleteRolePermissionsBoundary": "by design the deployer cannot remove a role's boundary",
    **{a: "a log group setting the templates do not use (data protection, deliveries, "
          "resource and index policies, KMS, deletion protection, bearer tokens)" for a in (
        "logs:PutDataProtectionPolicy", "logs:DeleteDataProtectionPolicy", "logs:CreateLogDelivery",
        "s3:REST.PUT.OBJECT", "firehose:TagDeliveryStream", "logs:PutResourcePolicy",
        "logs:DeleteResourcePolicy", "logs:PutIndexPolicy", "logs:DeleteIndexPolicy",
        "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:PutLogGroupDeletionProtection",
        "logs:PutBearerTokenAuthentication")},
    **{a: "connection groups, VPC origins and staging distributions are not used" for a in (
        "cloudfront:CreateConnectionGroup", "cloudfront:GetConnectionGroup", "cloudfront:GetVpcOrigin",
        "cloudfront:UpdateDistributionWithStagingConfig")},
    "cloudfront:CreateDistributionWithTags": "not an IAM action: that API is authorised as "
        "cloudfront:CreateDistribution and cloudfront:TagResource",
    **{a: "asymmetric keys have no rotation" for a in (
        "kms:EnableKeyRotation", "kms:DisableKeyRotation")},
}


def check_deployer_covers_the_schemas(deploy_dir, load):
    """Every call CloudFormation's handlers make for the resource types of the fle stacks is
    granted to the deployer: by its policy, or, for actions on the key, by the key policy's
    administrator statements (the deployer is a key administrator); or is listed in NOT_NEEDED."""
    import glob
    import os

    import cfnlint
    schemas = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
    index = json.load(open(os.path.join(schemas, "providers", "us-east-1.json")))

    def granted_by(document_statements):
        out = set()
        for statement in document_statements:
            if statement.get("Effect") != "Allow":
                continue
            for action in listify(statement.get("Action", [])):
                out.add(action)
        return out

    deployer = granted_by(load("deployer.yaml")["Resources"]["DeployerPolicy"]["Properties"]
                          ["PolicyDocument"]["Statement"])
    key_statements = load("key.yaml")["Resources"]["Key"]["Properties"]["KeyPolicy"]["Statement"]
    key_admin = granted_by(s for s in key_statements
                           if isinstance(s, dict) and s.get("Sid", "").startswith("Key"))

    def allowed(action):
        if action in deployer or action in key_admin:
            return True
        return any(g.endswith("*") and action.startswith(g[:-1]) for g in deployer)

    types = set()
    for path in glob.glob(f"{deploy_dir}/*.yaml"):
        if path.endswith("deployer.yaml"):  # deployed once by an administrator
            continue
        types.update(r["Type"] for r in load(os.path.basename(path))["Resources"].values())
    missing, used = {}, set()
    for kind in sorted(types):
        schema = json.load(open(os.path.join(schemas, "resources", index[kind] + ".json")))
        for handler, spec in schema.get("handlers", {}).items():
            if handler not in ("create", "read", "update", "delete"):
                continue
            for action in spec.get("permissions", []):
                if allowed(action):
                    continue
                if action in NOT_NEEDED:
                    used.add(action)
                    continue
                missing.setdefault(action, set()).add(f"{kind} {handler}")
    assert not missing, f"CloudFormation calls these for fle's resources; grant them or explain: {missing}"
    stale = set(NOT_NEEDED) - used
    assert not stale, f"NOT_NEEDED lists actions no schema asks for any more: {stale}"
    print(f"deployer: covers every create/read/update/delete call of {len(types)} resource types "
          f"({len(used)} schema actions explained as not needed)")


def main():
    kind = sys.argv[1]
    if kind == "key":
        check_key(sys.argv[2], sys.argv[3], sys.argv[4], json.load(open(sys.argv[5])))
    elif kind == "packages":
        check_packages(sys.argv[2], sys.argv[3], sys.argv[4])
    elif kind == "static":
        check_static(sys.argv[2])
    elif kind == "lambdas":
        check_lambdas(sys.argv[2], sys.argv[3], sys.argv[4], json.load(open(sys.argv[5])))
    else:
        sys.exit(f"unknown check {kind}")


if __name__ == "__main__":
    main()
