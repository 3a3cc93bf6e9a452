// Every element of index.html the gallery uses, looked up once. Module scripts run after the
// document is parsed, so all of them exist here.

const $ = (selector) => document.querySelector(selector);

export const els = {
  banner: $("#test-model-banner"),
  healthBanner: $("#health-banner"),
  form: $("#search-form"),
  input: $("#search-input"),
  fileInput: $("#file-input"),
  collection: $("#collection-select"),
  minScore: $("#min-score"),
  minScoreValue: $("#min-score-value"),
  stats: $("#stats"),
  statsMove: $("#stats-move"),
  showNew: $("#show-new"),
  apiKeyForm: $("#api-key-form"),
  apiKeyInput: $("#api-key-input"),
  status: $("#status"),
  statusText: $("#status-text"),
  queryImage: $("#query-image"),
  statusAction: $("#status-action"),
  grid: $("#grid"),
  sentinel: $("#sentinel"),
  moreStatus: $("#more-status"),
  dropOverlay: $("#drop-overlay"),
  lightbox: $("#lightbox"),
  lbImage: $("#lb-image"),
  lbLoading: $("#lb-loading"),
  lbKey: $("#lb-key"),
  lbDetails: $("#lb-details"),
  lbOpen: $("#lb-open"),
  lbPrev: $("#lb-prev"),
  lbNext: $("#lb-next"),
  lbClose: $("#lb-close"),
  moreLikeThis: $("#more-like-this"),
  homeLink: $("#home-link"),
};
