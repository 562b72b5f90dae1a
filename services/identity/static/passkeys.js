// Passkeys in the browser: add one on the account page, sign in with one on the sign-in page. The server
// speaks WebAuthn's JSON (base64url); the browser's API wants ArrayBuffers, so both directions convert.
const toBytes = (b64url) => {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((b64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
};
const toB64url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

const say = (text) => { const out = document.getElementById("passkey-outcome"); if (out) out.textContent = text; };

async function post(url, body, csrf) {
  const headers = {"content-type": "application/json", "accept": "application/json"};
  if (csrf) headers["x-csrf-token"] = csrf;
  const response = await fetch(url, {method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body)});
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || String(response.status));
  return answer;
}

const add = document.getElementById("add-passkey");
if (add && window.PublicKeyCredential) {
  add.hidden = false;
  add.addEventListener("click", async () => {
    try {
      const csrf = add.dataset.csrf;
      const options = await post("/me/passkeys/options", {}, csrf);
      options.challenge = toBytes(options.challenge);
      options.user.id = toBytes(options.user.id);
      options.excludeCredentials = (options.excludeCredentials || []).map((c) => ({...c, id: toBytes(c.id)}));
      const made = await navigator.credentials.create({publicKey: options});
      await post("/me/passkeys", {credential: {
        id: made.id, rawId: toB64url(made.rawId), type: made.type,
        authenticatorAttachment: made.authenticatorAttachment, clientExtensionResults: made.getClientExtensionResults(),
        response: {clientDataJSON: toB64url(made.response.clientDataJSON),
                   attestationObject: toB64url(made.response.attestationObject),
                   transports: made.response.getTransports ? made.response.getTransports() : []},
      }}, csrf);
      window.location.reload();
    } catch (error) { say(`${add.dataset.failed}: ${error.message}`); }
  });
}

const signIn = document.getElementById("passkey-sign-in");
if (signIn && window.PublicKeyCredential) {
  signIn.hidden = false;
  signIn.addEventListener("click", async () => {
    try {
      const options = await post("/sign-in/passkey/options", {});
      options.challenge = toBytes(options.challenge);
      options.allowCredentials = (options.allowCredentials || []).map((c) => ({...c, id: toBytes(c.id)}));
      const got = await navigator.credentials.get({publicKey: options});
      const answer = await post("/sign-in/passkey", {next: signIn.dataset.next, credential: {
        id: got.id, rawId: toB64url(got.rawId), type: got.type,
        authenticatorAttachment: got.authenticatorAttachment, clientExtensionResults: got.getClientExtensionResults(),
        response: {clientDataJSON: toB64url(got.response.clientDataJSON),
                   authenticatorData: toB64url(got.response.authenticatorData),
                   signature: toB64url(got.response.signature),
                   userHandle: got.response.userHandle ? toB64url(got.response.userHandle) : null},
      }});
      window.location.assign(answer.next);
    } catch (error) { say(`${signIn.dataset.failed}: ${error.message}`); }
  });
}
