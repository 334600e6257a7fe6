#!/usr/bin/env bash
# Offline checks of the Terraform code under terraform/: formatting, then for
# the module and the example: init (against a local provider mirror, no
# registry), validate, and terraform test with a mocked AWS provider. Then the
# servers' boot script is rendered and checked: bash -n (and shellcheck and
# systemd-analyze when installed), and the node.hcl it writes is parsed by
# quorumca's own config parser (go test, tag terraformcheck).
#
# Nothing is written into the repository: init and the tests run in a
# temporary copy with a temporary TF_DATA_DIR. TF_PLUGIN_DIR may name the
# mirror (the directory that holds registry.terraform.io/); otherwise it is
# searched for. With -tools, it only checks that terraform and the mirror
# are there (make tools).
set -euo pipefail

start=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
configs=(modules/quorumca examples/multi-az)

export TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0

# A progress line, with the seconds elapsed so far.
say() { echo "terraform-check: $* [$(($(date +%s) - start)) s]"; }

missing() {
  echo "terraform-check: MISSING: $*" >&2
  exit 1
}

command -v terraform >/dev/null 2>&1 ||
  missing "terraform (1.9 or later) is not on PATH: https://developer.hashicorp.com/terraform/install"

platform=$(terraform version -json 2>/dev/null | sed -n 's/.*"platform": *"\([^"]*\)".*/\1/p' || true)
[ -n "$platform" ] || missing "terraform version -json did not name the platform (terraform too old?)"

# A mirror directory holds registry.terraform.io/hashicorp/aws/<version>/<platform>/.
# The module needs hashicorp/aws 5.x or 6.x.
has_aws() {
  compgen -G "$1/registry.terraform.io/hashicorp/aws/[56].*/$platform/terraform-provider-aws*" >/dev/null
}

find_mirror() {
  local d found
  if [ -n "${TF_PLUGIN_DIR:-}" ]; then
    has_aws "$TF_PLUGIN_DIR" && echo "$TF_PLUGIN_DIR"
    return 0
  fi
  # Terraform's own implied mirror locations first, then the whole machine.
  for d in "$HOME/.terraform.d/plugins" "${XDG_DATA_HOME:-$HOME/.local/share}/terraform/plugins" \
    /usr/local/share/terraform/plugins /usr/share/terraform/plugins; do
    if has_aws "$d"; then
      echo "$d"
      return 0
    fi
  done
  found=$(find / \( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o \
    -name 'terraform-provider-aws*' -path "*/registry.terraform.io/hashicorp/aws/[56].*/$platform/*" \
    -print -quit 2>/dev/null || true)
  [ -n "$found" ] && echo "${found%%/registry.terraform.io/*}"
  return 0
}

mirror=$(find_mirror)
[ -n "$mirror" ] ||
  missing "a provider mirror with hashicorp/aws 5.x or 6.x for $platform (a directory holding registry.terraform.io/hashicorp/aws/<version>/$platform/; set TF_PLUGIN_DIR to it)"
if [ "${1:-}" = -tools ]; then
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/terraform-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "$(terraform version | head -n 1), provider mirror $mirror"

say "fmt"
terraform fmt -check -recursive -diff -no-color "$here"

# A copy without local state, lock files or .terraform directories.
tar -C "$here" --exclude=.terraform --exclude=.terraform.lock.hcl --exclude='*.tfstate*' \
  -cf - "${configs[@]}" | tar -C "$work" -xf -

# init, validate and test one configuration; its output goes to $work/<n>.log
# and the number of passing test runs to $work/<n>.passed.
check_config() {
  local c=$1 n=$2 passed
  export TF_DATA_DIR="$work/data/$c"
  cd "$work/$c"
  say "$c: init"
  terraform init -backend=false -plugin-dir="$mirror" -no-color >"$work/$n.init.log" 2>&1 || {
    cat "$work/$n.init.log"
    return 1
  }
  say "$c: validate"
  terraform validate -no-color
  say "$c: test"
  terraform test -no-color >"$work/$n.test.log" 2>&1 || {
    cat "$work/$n.test.log"
    return 1
  }
  grep -v '^$' "$work/$n.test.log"
  passed=$(sed -n 's/^Success! \([0-9]*\) passed, 0 failed\.$/\1/p' "$work/$n.test.log")
  if [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
    echo "terraform-check: $c: terraform test did not report any passing run"
    return 1
  fi
  echo "$passed" >"$work/$n.passed"
  say "$c: $passed test runs passed"
}

# The configurations are independent: check them side by side, then show
# their output one after the other.
pids=()
for i in "${!configs[@]}"; do
  check_config "${configs[$i]}" "$i" >"$work/$i.log" 2>&1 &
  pids+=("$!")
done
failed=0 runs=0
for i in "${!configs[@]}"; do
  wait "${pids[$i]}" || failed=1
  cat "$work/$i.log"
  if [ -f "$work/$i.passed" ]; then
    runs=$((runs + $(cat "$work/$i.passed")))
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "terraform-check: FAILED" >&2
  exit 1
fi

# The boot script and the configuration it writes, rendered without AWS.
render=modules/quorumca/tests/render
say "$render: render user data"
export TF_DATA_DIR="$work/data/$render"
cd "$work/$render"
{
  terraform init -backend=false -no-color &&
    terraform apply -auto-approve -no-color
} >"$work/render.log" 2>&1 || {
  cat "$work/render.log" >&2
  exit 1
}
terraform output -raw user_data >"$work/user-data.sh"
terraform output -raw node_hcl >"$work/node.hcl"
terraform output -raw node_hcl_without_authority >"$work/node-without-authority.hcl"
terraform output -raw systemd_unit >"$work/quorumca.service"
terraform output -raw lifecycle_script >"$work/quorumca-lifecycle"
terraform output -raw lifecycle_unit >"$work/quorumca-lifecycle.service"

say "user data: bash -n"
bash -n "$work/user-data.sh"
bash -n "$work/quorumca-lifecycle"
if command -v shellcheck >/dev/null 2>&1; then
  say "user data: shellcheck"
  shellcheck --shell=bash "$work/user-data.sh" "$work/quorumca-lifecycle"
else
  say "user data: shellcheck not installed, syntax checked only"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  say "quorumca.service: systemd-analyze verify"
  # verify insists that ExecStart's binary exists; the directives are what
  # is checked here.
  mkdir -p "$work/unit"
  sed 's|^ExecStart=/usr/local/bin/quorumca |ExecStart=/bin/true |' "$work/quorumca.service" >"$work/unit/quorumca.service"
  sed 's|^ExecStart=.*|ExecStart=/bin/true|' "$work/quorumca-lifecycle.service" >"$work/unit/quorumca-lifecycle.service"
  systemd-analyze verify "$work/unit/quorumca.service" "$work/unit/quorumca-lifecycle.service"
else
  say "quorumca.service: systemd-analyze not installed, not verified"
fi
if command -v go >/dev/null 2>&1; then
  say "node.hcl: quorumca's config parser"
  # GOPROXY=off: offline, from the module cache the repository's build uses.
  (cd "$here/.." && GOPROXY=off go test -tags terraformcheck -count=1 "./terraform/$render" \
    -args -node-config "$work/node.hcl" -node-config-without-authority "$work/node-without-authority.hcl")
else
  say "node.hcl: go not installed, not parsed"
fi

echo "terraform-check: OK: ${#configs[@]} configurations valid, $runs terraform test runs passed, user data checked, in $(($(date +%s) - start)) s"
