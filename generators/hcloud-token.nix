# hcloud-token: the Hetzner Cloud API token for the terraform/terranix hcloud
# provider. Asked once (hidden) and persisted: the engine keeps the answer as
# this generator's secret file of the same name and reuses it. It is never
# deployed to a machine; terraform reads it on the admin's host:
#   TF_VAR_hcloud_token="$(vars get cinnabar hcloud-token/hcloud-token)"
#
# role "default": generator hcloud-token, prompt hcloud-token, file hcloud-token.
{
  description = "Hetzner Cloud API token (hidden, persisted prompt) for terraform";

  roles.default = _: {
    hcloud-token = {
      prompts.hcloud-token = {
        description = "Hetzner Cloud API token (terraform/terranix hcloud provider)";
        type = "hidden";
        persist = true;
      };
      files.hcloud-token = {
        secret = true;
        deploy = false;
      };
      script = ''
        set -eu
        umask 077
        # a persisted answer may already be in place; otherwise copy the prompt
        if [ ! -e "$out/hcloud-token" ]; then
          token=""
          if [ -f "$prompts/hcloud-token" ]; then
            token=$(cat "$prompts/hcloud-token")
          fi
          if [ -z "$token" ]; then
            echo "hcloud-token: the token is empty: answer the prompt hcloud-token" >&2
            exit 1
          fi
          printf '%s' "$token" > "$out/hcloud-token"
        fi
      '';
    };
  };
}
