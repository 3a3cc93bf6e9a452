// The API key form: shown when the API answers 401, it keeps the key in this browser (api.js) and
// starts the gallery again.

import { saveApiKey, setUnauthorizedHandler } from "./api.js";
import { els } from "./elements.js";
import { setStatus } from "./status.js";

// onSaved: what to run again once a key is stored.
export function registerKeyForm(onSaved) {
  setUnauthorizedHandler(() => {
    els.apiKeyForm.hidden = false;
  });
  els.apiKeyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = els.apiKeyInput.value.trim();
    if (!key) return;
    try {
      saveApiKey(key);
    } catch {
      setStatus("error", "This browser does not allow storing the key (storage disabled); enable site storage.");
      return;
    }
    els.apiKeyInput.value = "";
    els.apiKeyForm.hidden = true;
    onSaved();
  });
}
