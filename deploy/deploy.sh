#!/usr/bin/env bash
# Deploys fle: the KMS key, the Lambda@Edge encryptor (with a CloudFront distribution or for an
# existing one), the decrypt Lambda, and partner access. See deploy/README.md.
#
#   deploy/deploy.sh [--env FILE] [STEP...]
#
# STEPs, in the order they run when none is given: key package decrypt edge, then partner when
# FLE_PARTNER_ACCOUNT_ID is set.
#   key      the key stack (deploy/key.yaml) in FLE_REGION
#   package  fetches the key's public key (fle keys fetch) and builds both Lambda packages into
#            FLE_BUILD_DIR: fle-lambda-edge.zip (public key and [edge] inside) and
#            fle-decrypt-lambda.zip (bootstrap, fle.toml with kms_key_id, the public key)
#   decrypt  uploads fle-decrypt-lambda.zip and deploys deploy/decrypt.yaml in FLE_REGION
#   edge     uploads fle-lambda-edge.zip and deploys deploy/edge.yaml in us-east-1
#   partner  deploys deploy/partner-access.yaml in FLE_REGION
#   deployer (never by default; once, by an administrator) deploys deploy/deployer.yaml: the
#            deployer's policy and the permissions boundary of every fle-* role
#
# Settings come from the environment, or from --env FILE (shell assignments; sourced). Needs the
# AWS CLI, python3, and for `package` the Rust toolchain (or FLE_BIN and FLE_DECRYPT_BOOTSTRAP).
# With AWS_ENDPOINT_URL set (LocalStack, moto) every call, fle keys fetch included, goes there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "deploy.sh: $*" >&2; exit 1; }

steps=()
while [ $# -gt 0 ]; do
    case $1 in
        --env) [ $# -ge 2 ] || usage; set -a; # shellcheck disable=SC1090
               . "$2"; set +a; shift 2 ;;
        -h|--help) usage ;;
        key|package|decrypt|edge|partner|deployer) steps+=("$1"); shift ;;
        *) echo "deploy.sh: unknown step or option: $1" >&2; usage ;;
    esac
done

: "${FLE_REGION:?set FLE_REGION: the region of the key and the decrypt Lambda}"
prefix=${FLE_STACK_PREFIX:-fle}
case $prefix in fle|fle-*) ;; *) die "FLE_STACK_PREFIX must be fle or start with fle- (the deployer policy allows stacks fle-* only)";; esac
key_stack=$prefix-key
decrypt_stack=$prefix-decrypt
edge_stack=$prefix-edge
partner_stack=$prefix-partner
key_id=${FLE_KEY_ID:-01}
decrypt_function=${FLE_DECRYPT_FUNCTION:-fle-decrypt}
edge_function=${FLE_EDGE_FUNCTION:-fle-edge}
partner_role=${FLE_PARTNER_ROLE:-fle-partner-decrypt}
build=${FLE_BUILD_DIR:-$root/target/deploy}
arch=${FLE_ARCH:-x86_64}
if [ ${#steps[@]} -eq 0 ]; then
    steps=(key package decrypt edge)
    [ -n "${FLE_PARTNER_ACCOUNT_ID:-}" ] && steps+=(partner)
fi

command -v aws >/dev/null || die "the AWS CLI (aws) is not installed"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"

account() { aws sts get-caller-identity --region "$FLE_REGION" --query Account --output text; }
partition() {
    case $FLE_REGION in cn-*) echo aws-cn ;; us-gov-*) echo aws-us-gov ;; *) echo aws ;; esac
}

# cfn_deploy STACK TEMPLATE REGION KEY=VALUE...: creates or updates the stack through a change
# set, polling every FLE_POLL_SECONDS (default 5); on failure prints the failed events. The
# parameters go through a 0600 file, not the command line (the external ID is a secret).
cfn_deploy() {
    local stack=$1 template=$2 region=$3 type=CREATE status change reason
    shift 3
    python3 -c '
import json, sys
print(json.dumps([{"ParameterKey": k, "ParameterValue": v}
                  for k, _, v in (a.partition("=") for a in sys.argv[1:])]))' "$@" > "$work/params.json"
    echo "==> $stack ($region): $(basename "$template")"
    status=$(stack_status "$stack" "$region")
    case $status in
        NONE|REVIEW_IN_PROGRESS) type=CREATE ;;
        ROLLBACK_COMPLETE) die "stack $stack is in ROLLBACK_COMPLETE (its creation failed): delete it, then deploy again" ;;
        *IN_PROGRESS) die "stack $stack is busy ($status)" ;;
        *) type=UPDATE ;;
    esac
    change="fle-$(date +%s)"
    aws cloudformation create-change-set --region "$region" --stack-name "$stack" \
        --change-set-name "$change" --change-set-type "$type" \
        --template-body "file://$template" --parameters "file://$work/params.json" \
        --capabilities CAPABILITY_NAMED_IAM >/dev/null
    while :; do
        status=$(aws cloudformation describe-change-set --region "$region" --stack-name "$stack" \
            --change-set-name "$change" --query '[Status, StatusReason]' --output text)
        case $status in
            CREATE_COMPLETE*) break ;;
            FAILED*)
                reason=${status#FAILED}
                case $reason in
                    *"didn't contain changes"*|*"No updates are to be performed"*)
                        aws cloudformation delete-change-set --region "$region" --stack-name "$stack" \
                            --change-set-name "$change"
                        echo "$stack: no changes"
                        return 0 ;;
                esac
                die "change set of $stack failed:$reason" ;;
        esac
        sleep "${FLE_POLL_SECONDS:-5}"
    done
    aws cloudformation execute-change-set --region "$region" --stack-name "$stack" --change-set-name "$change"
    while :; do
        status=$(aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
            --query 'Stacks[0].StackStatus' --output text)
        case $status in
            *IN_PROGRESS) sleep "${FLE_POLL_SECONDS:-5}" ;;
            CREATE_COMPLETE|UPDATE_COMPLETE) echo "$stack: $status"; return 0 ;;
            *)
                aws cloudformation describe-stack-events --region "$region" --stack-name "$stack" \
                    --query "StackEvents[?contains(ResourceStatus, 'FAILED')].[LogicalResourceId, ResourceStatusReason]" \
                    --output text >&2
                die "stack $stack: $status" ;;
        esac
    done
}

# stack_status STACK REGION: the stack's status, NONE when it does not exist; dies on any other
# error (credentials, permissions, throttling) rather than take it for a missing stack.
stack_status() {
    local out
    if out=$(aws cloudformation describe-stacks --region "$2" --stack-name "$1" \
        --query 'Stacks[0].StackStatus' --output text 2>&1); then
        echo "$out"
    elif [[ $out == *"does not exist"* ]]; then
        echo NONE
    else
        die "describing stack $1: $out"
    fi
}

# parameter STACK REGION NAME: a parameter of a deployed stack ("" when the stack does not exist).
parameter() {
    [ "$(stack_status "$1" "$2")" = NONE ] && return 0
    aws cloudformation describe-stacks --region "$2" --stack-name "$1" \
        --query "Stacks[0].Parameters[?ParameterKey=='$3'].ParameterValue" --output text
}

# output STACK REGION KEY: one output of a deployed stack.
output() {
    local value
    value=$(aws cloudformation describe-stacks --region "$2" --stack-name "$1" \
        --query "Stacks[0].Outputs[?OutputKey=='$3'].OutputValue" --output text)
    [ -n "$value" ] && [ "$value" != None ] || die "stack $1 has no output $3"
    echo "$value"
}

key_arn() {
    if [ -n "${FLE_KEY_ARN:-}" ]; then echo "$FLE_KEY_ARN"; else output "$key_stack" "$FLE_REGION" KeyArn; fi
}

# key_spec ARN: the key's spec. FLE_KEY_SPEC when set (checked against KMS when KMS answers),
# else KMS's DescribeKey: decrypting roles get kms:Decrypt or kms:DeriveSharedSecret by it.
key_spec() {
    local actual
    actual=$(aws kms describe-key --region "$(echo "$1" | cut -d: -f4)" --key-id "$1" \
        --query KeyMetadata.KeySpec --output text 2>/dev/null) || actual=""
    if [ -n "${FLE_KEY_SPEC:-}" ]; then
        [ -z "$actual" ] || [ "$actual" = "$FLE_KEY_SPEC" ] \
            || die "FLE_KEY_SPEC is $FLE_KEY_SPEC but key $1 is $actual"
        echo "$FLE_KEY_SPEC"
    else
        [ -n "$actual" ] || die "cannot read the spec of key $1 (kms:DescribeKey); set FLE_KEY_SPEC"
        echo "$actual"
    fi
}

# The permissions boundary of every role the stacks create (deploy/deployer.yaml's
# fle-role-boundary, which the deployer policy requires); FLE_PERMISSIONS_BOUNDARY_ARN=none: none.
boundary() {
    case ${FLE_PERMISSIONS_BOUNDARY_ARN:-} in
        none) echo "" ;;
        "") echo "arn:$(partition):iam::$(account):policy/fle-role-boundary" ;;
        *) echo "$FLE_PERMISSIONS_BOUNDARY_ARN" ;;
    esac
}

# toml_list "a,b": ["a", "b"] (fields are names or $.paths; quotes and backslashes refused).
toml_list() {
    python3 -c '
import json, sys
items = [s.strip() for s in sys.argv[1].split(",") if s.strip()]
if not items or any(c in s for s in items for c in "\"\\\n"):
    sys.exit("deploy.sh: FLE_FIELDS must be a comma-separated list of field names or $.paths")
print(json.dumps(items))' "$1"
}


# upload ZIP BUCKET REGION NAME: s3://BUCKET/fle/NAME-SHA256.zip (content-addressed, so a new
# package is a new key and CloudFormation updates the function); prints the key.
upload() {
    local sha key
    sha=$(sha256sum "$1" | cut -d' ' -f1)
    key="fle/$4-$sha.zip"
    aws s3api put-object --region "$3" --bucket "$2" --key "$key" --body "$1" >/dev/null
    echo "$key"
}

step_key() {
    local acct part roles arn spec=${FLE_KEY_SPEC:-RSA_2048} existing
    : "${FLE_KEY_ADMIN_ARNS:?set FLE_KEY_ADMIN_ARNS: roles that administer the key, the deployer included}"
    : "${FLE_BUILD_ROLE_ARN:?set FLE_BUILD_ROLE_ARN: the role that runs fle keys fetch (kms:GetPublicKey)}"
    # KeySpec cannot change in place: CloudFormation would make a new key, move the alias and
    # leave every envelope sealed to the old one to a key the decrypt role may no longer use.
    existing=$(parameter "$key_stack" "$FLE_REGION" KeySpec)
    [ -z "$existing" ] || [ "$existing" = "$spec" ] \
        || die "stack $key_stack holds a $existing key; refusing to replace it with $spec (deploy a new key under another FLE_STACK_PREFIX and re-encrypt)"
    acct=$(account)
    part=$(partition)
    roles="arn:$part:iam::$acct:role/$decrypt_function-role-$FLE_REGION"
    [ -n "${FLE_PARTNER_ACCOUNT_ID:-}" ] && roles="$roles,arn:$part:iam::$acct:role/$partner_role"
    [ -n "${FLE_DECRYPT_ROLE_ARNS:-}" ] && roles="$roles,$FLE_DECRYPT_ROLE_ARNS"
    cfn_deploy "$key_stack" "$root/deploy/key.yaml" "$FLE_REGION" \
        "KeySpec=$spec" "AliasName=${FLE_KEY_ALIAS:-alias/fle}" \
        "KeyAdminArns=$FLE_KEY_ADMIN_ARNS" "BuildRoleArn=$FLE_BUILD_ROLE_ARN" \
        "DecryptRoleArns=$roles" "OrganizationId=${FLE_ORG_ID:-}" \
        "PendingWindowInDays=${FLE_PENDING_WINDOW_DAYS:-30}"
    arn=$(output "$key_stack" "$FLE_REGION" KeyArn)
    echo "key: $arn"
}

step_package() {
    local arn spec fle fields entry bootstrap machine envelope=""
    : "${FLE_FIELDS:?set FLE_FIELDS: the fields to encrypt, e.g. ssn,email,\$.card.number}"
    arn=$(key_arn)
    spec=$(key_spec "$arn")
    fields=$(toml_list "$FLE_FIELDS")
    if [ -n "${FLE_BIN:-}" ]; then
        fle=$FLE_BIN
    else
        (cd "$root" && cargo build --release --locked -q -p fle --bin fle)
        fle=$root/target/release/fle
    fi
    case ${FLE_ENVELOPE:-v1} in
        v1) ;;
        v2) [ "$spec" = ECC_NIST_P256 ] || envelope='envelope = "v2"' ;;
        *) die "FLE_ENVELOPE must be v1 or v2" ;;
    esac
    rm -rf "$build/edge" "$build/decrypt"
    mkdir -p "$build/edge" "$build/decrypt/keys"
    # The public key, from KMS, as the build role: the [[keys]] entry names keys/ID.pub.pem.
    entry=$(cd "$build/edge" && "$fle" keys fetch --key-id "$arn" --id "$key_id" --dir keys \
        --region "$FLE_REGION" ${AWS_ENDPOINT_URL:+--kms-endpoint "$AWS_ENDPOINT_URL"})
    cp "$build/edge/keys/$key_id.pub.pem" "$build/decrypt/keys/"
    {
        echo "$entry"
        [ -n "$envelope" ] && echo "$envelope"
        echo
        if [ -n "${FLE_EDGE_TOML:-}" ]; then cat "$FLE_EDGE_TOML"; else
            printf '[edge]\nkey = "%s"\nfields = %s\n' "$key_id" "$fields"
        fi
    } > "$build/edge/fle.toml"
    {
        echo "$entry"
        [ -n "$envelope" ] && echo "$envelope"
        echo
        if [ -n "${FLE_DECRYPT_TOML:-}" ]; then cat "$FLE_DECRYPT_TOML"; else
            # Decrypt only where the edge encrypts: an envelope smuggled elsewhere stays sealed.
            printf '[decrypt]\nfields = %s\n' "$fields"
        fi
    } > "$build/decrypt/fle.toml"
    "$fle" keys list --config "$build/decrypt/fle.toml" >/dev/null
    "$root/edge-encryptor/build-lambda-edge.sh" "$build/edge/fle.toml" "$build/fle-lambda-edge.zip"

    if [ -n "${FLE_DECRYPT_BOOTSTRAP:-}" ]; then
        bootstrap=$FLE_DECRYPT_BOOTSTRAP
    else
        bootstrap=$("$root/deploy/build-decrypt-lambda.sh" "$arch")
    fi
    # The binary must be for the function's architecture (ELF e_machine), or it cannot start.
    machine=$(python3 -c 'import sys; h = open(sys.argv[1], "rb").read(20); print(int.from_bytes(h[18:20], "little") if h[:4] == b"\x7fELF" else 0)' "$bootstrap")
    case $arch:$machine in
        x86_64:62|arm64:183) ;;
        *) die "$bootstrap is not a Linux $arch executable (ELF machine $machine)" ;;
    esac
    cp "$bootstrap" "$build/decrypt/bootstrap"
    python3 "$root/scripts/reproducible-zip.py" "$build/decrypt" "$build/fle-decrypt-lambda.zip" \
        bootstrap fle.toml "keys/$key_id.pub.pem" --executable bootstrap
    echo "packages: $build/fle-lambda-edge.zip, $build/fle-decrypt-lambda.zip ($arch)"
}

step_decrypt() {
    local zip=$build/fle-decrypt-lambda.zip key arn spec pb
    : "${FLE_ARTIFACT_BUCKET:?set FLE_ARTIFACT_BUCKET: a bucket in FLE_REGION for the decrypt package}"
    [ -f "$zip" ] || die "$zip is missing: run the package step first"
    arn=$(key_arn)
    spec=$(key_spec "$arn")
    pb=$(boundary)
    key=$(upload "$zip" "$FLE_ARTIFACT_BUCKET" "$FLE_REGION" fle-decrypt-lambda)
    cfn_deploy "$decrypt_stack" "$root/deploy/decrypt.yaml" "$FLE_REGION" \
        "FunctionName=$decrypt_function" "CodeS3Bucket=$FLE_ARTIFACT_BUCKET" "CodeS3Key=$key" \
        "Architecture=$arch" "KeyArn=$arn" "KeySpec=$spec" \
        "LogRetentionInDays=${FLE_LOG_RETENTION_DAYS:-30}" "OrganizationId=${FLE_ORG_ID:-}" \
        "PermissionsBoundaryArn=$pb"
    arn=$(aws lambda get-function-configuration --region "$FLE_REGION" \
        --function-name "$decrypt_function" --query FunctionArn --output text)
    echo "decrypt function: $arn"
}

step_edge() {
    local zip=$build/fle-lambda-edge.zip key sha distribution=false version pb
    : "${FLE_EDGE_ARTIFACT_BUCKET:?set FLE_EDGE_ARTIFACT_BUCKET: a bucket in us-east-1 for the Lambda@Edge package}"
    [ -f "$zip" ] || die "$zip is missing: run the package step first"
    sha=$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$zip")
    pb=$(boundary)
    key=$(upload "$zip" "$FLE_EDGE_ARTIFACT_BUCKET" us-east-1 fle-lambda-edge)
    [ -n "${FLE_ORIGIN_DOMAIN:-}" ] && distribution=true
    # A distribution is retained, never deleted by the stack, but the stack would stop managing
    # it: refuse to drop it because FLE_ORIGIN_DOMAIN was forgotten.
    if [ "$distribution" = false ] && [ "$(parameter "$edge_stack" us-east-1 CreateDistribution)" = true ]; then
        die "stack $edge_stack manages a distribution: set FLE_ORIGIN_DOMAIN (the origin) to keep it"
    fi
    cfn_deploy "$edge_stack" "$root/deploy/edge.yaml" us-east-1 \
        "FunctionName=$edge_function" "CodeS3Bucket=$FLE_EDGE_ARTIFACT_BUCKET" "CodeS3Key=$key" \
        "CodeSha256=$sha" "CreateDistribution=$distribution" "OriginDomainName=${FLE_ORIGIN_DOMAIN:-}" \
        "Runtime=${FLE_EDGE_RUNTIME:-nodejs22.x}" "PermissionsBoundaryArn=$pb"
    version=$(aws lambda list-versions-by-function --region us-east-1 --function-name "$edge_function" \
        --query 'Versions[-1].FunctionArn' --output text)
    echo "edge function version (what CloudFront runs): $version"
}

step_partner() {
    local external_id arn spec pb
    : "${FLE_PARTNER_ACCOUNT_ID:?set FLE_PARTNER_ACCOUNT_ID: the 12-digit account id of the partner}"
    : "${FLE_EXTERNAL_ID_FILE:?set FLE_EXTERNAL_ID_FILE: a file holding the external ID agreed with the partner}"
    external_id=$(tr -d '\r\n' < "$FLE_EXTERNAL_ID_FILE")
    arn=$(key_arn)
    spec=$(key_spec "$arn")
    pb=$(boundary)
    cfn_deploy "$partner_stack" "$root/deploy/partner-access.yaml" "$FLE_REGION" \
        "KeyArn=$arn" "KeySpec=$spec" "PartnerAccountId=$FLE_PARTNER_ACCOUNT_ID" \
        "ExternalId=$external_id" "RoleName=$partner_role" "PermissionsBoundaryArn=$pb"
    arn=$(output "$partner_stack" "$FLE_REGION" RoleArn)
    echo "partner role: $arn"
}

step_deployer() {
    local arn
    : "${FLE_ARTIFACT_BUCKET:?set FLE_ARTIFACT_BUCKET: the bucket of the decrypt package}"
    : "${FLE_EDGE_ARTIFACT_BUCKET:?set FLE_EDGE_ARTIFACT_BUCKET: the bucket of the edge package}"
    cfn_deploy "$prefix-deployer" "$root/deploy/deployer.yaml" "$FLE_REGION" \
        "EdgeArtifactBucket=$FLE_EDGE_ARTIFACT_BUCKET" "DecryptArtifactBucket=$FLE_ARTIFACT_BUCKET" \
        "AttachTo=${FLE_DEPLOYER_ROLE:-}"
    arn="arn:$(partition):iam::$(account):policy/fle-role-boundary"
    aws iam get-policy --region "$FLE_REGION" --policy-arn "$arn" >/dev/null
    echo "role boundary: $arn"
}

for step in "${steps[@]}"; do
    "step_$step"
done
