#!/usr/bin/env bash
# One-time setup for a fresh machine: npm packages (which bring the project's own Bun) and, on Linux
# without a Vulkan driver that Dawn accepts, Mesa's lavapipe (CPU Vulkan) from bookworm-backports.
# Safe to run again: every step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[36m[setup]\033[0m %s\n' "$*"; }
warn() { printf '\033[33m[setup]\033[0m %s\n' "$*" >&2; }

# 1. npm packages (Bun itself is a pinned devDependency).
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# 2. A Vulkan driver Dawn can use. Dawn rejects Debian 12's Mesa 22.3 lavapipe; Mesa >= 25 works.
have_vulkan_icd() {
  # Mesa >= 25 (lavapipe or a Mesa GPU driver) works; Debian 12's Mesa 22.3 is rejected by Dawn.
  local v f
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 25 && return 0
  # Otherwise only a vendor driver (NVIDIA, AMD's amdvlk, ...) counts: Mesa's own ICDs are the old ones.
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in
      lvp_icd*|intel_icd*|intel_hasvk_icd*|radeon_icd*|virtio_icd*|gfxstream_vk_icd*|nouveau_icd*|asahi_icd*|freedreno_icd*|panfrost_icd*|powervr_mesa_icd*|broadcom_icd*) ;;
      *) return 0 ;;
    esac
  done
  return 1
}

if [ "$(uname -s)" = "Linux" ] && ! have_vulkan_icd; then
  if [ -r /etc/os-release ] && . /etc/os-release && [ "${VERSION_CODENAME:-}" = "bookworm" ] && command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    say "installing Mesa lavapipe (software Vulkan) from bookworm-backports"
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/recall-backports.list >/dev/null
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    warn "no usable Vulkan driver found and this is not Debian 12 (bookworm)."
    warn "install your GPU's Vulkan driver, or Mesa >= 25 'mesa-vulkan-drivers' (lavapipe) from your distribution,"
    warn "then run ./recall doctor. macOS uses Metal and Windows D3D12 with no extra install."
  fi
fi
say "done"
