// The admin app: login, theme, and a hash router (#/status, #/channels, #/channel/<name>,
// #/connections, #/actions). Each page module exports render(view, params) and returns a
// function that stops what the page started (timers, the live tail).

import * as api from './api.js';
import { h, replace } from './dom.js';
import * as actions from './actions.js';
import * as channel from './channel.js';
import * as channels from './channels.js';
import * as connections from './connections.js';
import * as status from './status.js';

const $ = (id) => document.getElementById(id);
const pages = { status, channels, channel, connections, actions };
let stop = () => {};

function parseRoute() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const [name, ...rest] = path.split('/');
  const params = Object.fromEntries(new URLSearchParams(query));
  if (name === 'channel' && rest.length) params.channel = decodeURIComponent(rest.join('/'));
  return { name: pages[name] ? name : 'status', params };
}

function route() {
  stop();
  stop = () => {};
  const { name, params } = parseRoute();
  for (const tab of document.querySelectorAll('.tabs a')) {
    const active = tab.dataset.tab === name || (name === 'channel' && tab.dataset.tab === 'channels');
    tab.classList.toggle('active', active);
    if (active) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  const view = $('view');
  view.dataset.view = name;
  replace(view);
  try {
    stop = pages[name].render(view, params) || (() => {});
  } catch (err) {
    replace(view, h('p', { class: 'notice bad' }, `This page failed: ${err.message}`));
  }
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('insecure-banner').hidden = !api.session.insecure;
  $('logout').hidden = api.session.insecure;
  route();
}

function showLogin(message) {
  stop();
  stop = () => {};
  $('app').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('login-password').value = '';
  $('login-password').focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const button = $('login-submit');
  const error = $('login-error');
  button.disabled = true;
  try {
    const outcome = await api.login($('login-password').value);
    if (outcome.ok) {
      showApp();
      return;
    }
    error.textContent = outcome.message;
    error.dataset.throttled = outcome.throttled ? 'true' : 'false';
    error.hidden = false;
    $('login-password').select();
  } catch (err) {
    error.textContent = `Login failed: ${err.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

const THEMES = ['auto', 'light', 'dark'];

function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $('theme').title = `Theme: ${theme} (click to change)`;
}

function cycleTheme() {
  const current = localStorage.getItem('tidings-admin-theme') || 'auto';
  const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
  localStorage.setItem('tidings-admin-theme', next);
  applyTheme(next);
}

async function boot() {
  applyTheme(localStorage.getItem('tidings-admin-theme') || 'auto');
  $('theme').addEventListener('click', cycleTheme);
  $('login-form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', () => {
    api.setToken('');
    showLogin('');
  });
  api.session.onUnauthorized = () => {
    api.setToken('');
    showLogin('Your session ended: log in again.');
  };
  window.addEventListener('hashchange', () => {
    if (!$('app').hidden) route();
  });
  let state;
  try {
    state = await api.init();
  } catch (err) {
    showLogin(`The server did not answer: ${err.message}`);
    return;
  }
  api.session.insecure = !!state.insecure;
  if (state.insecure || state.authenticated) showApp();
  else {
    if (api.session.token) api.setToken('');
    showLogin('');
  }
}

boot();
