/** The run report's stylesheet (inlined in report.html): system fonts only, light and dark themes. */
export const REPORT_CSS = `
:root{--bg:#f5f6f8;--card:#fff;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--grid:#eef0f3;--axis:#9ca3af;--chip:#f3f4f6;
--user:#eff6ff;--user-b:#bfdbfe;--call:#fff7ed;--call-b:#fb923c;--resp:#ecfdf5;--resp-b:#34d399;--mark:#fef08a;--mark-b:#ca8a04;
--good:#047857;--good-bg:#d1fae5;--bad:#b91c1c;--bad-bg:#fee2e2;--accent:#2563eb;--hover:rgba(100,116,139,.13)}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--card:#171a21;--ink:#e5e7eb;--muted:#9ca3af;--line:#2a2f3a;--grid:#222631;--axis:#4b5563;--chip:#222631;
--user:#172033;--user-b:#1e3a8a;--call:#2a1d10;--call-b:#c2410c;--resp:#0f2a22;--resp-b:#059669;--mark:#4d3f06;--mark-b:#eab308;
--good:#6ee7b7;--good-bg:#064e3b;--bad:#fca5a5;--bad-bg:#7f1d1d;--hover:rgba(148,163,184,.16)}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1440px;margin:0 auto;padding:24px 28px 40px}
code,pre,.path,.tag{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
h1{font-size:26px;margin:0;letter-spacing:-.01em}
h2{font-size:17px;margin:30px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:0}
.muted{color:var(--muted)}
header{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.title{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap}
.sub{color:var(--muted);font-size:15px}
.path{color:var(--muted);font-size:12px;margin-top:2px;word-break:break-all}
.status{display:flex;align-items:center;gap:14px;flex-wrap:wrap;margin-top:12px}
.when{color:var(--muted)}
.progress{width:220px;height:8px;background:var(--chip);border-radius:4px;overflow:hidden}
.progress div{height:100%;background:var(--accent)}
.cfgs{display:flex;flex-wrap:wrap;gap:6px;margin-top:12px}
.cfg{background:var(--chip);border-radius:6px;padding:2px 8px;font-size:12.5px}
.cfg span{color:var(--muted);margin-right:6px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-top:16px}
.tile{border:1px solid var(--line);border-radius:10px;padding:10px 12px;display:flex;flex-direction:column}
.tile span{color:var(--muted);font-size:12px}
.tile b{font-size:21px;font-weight:650;letter-spacing:-.01em;margin:2px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile small{color:var(--muted);font-size:11.5px;min-height:1em}
.tile.alert{border-color:var(--bad);background:var(--bad-bg)}
nav{position:sticky;top:0;z-index:2;display:flex;gap:4px;flex-wrap:wrap;margin:14px 0 0;padding:8px 0;background:var(--bg)}
nav a{color:var(--ink);text-decoration:none;font-size:13px;padding:4px 10px;border-radius:999px;border:1px solid var(--line);background:var(--card)}
nav a:hover{border-color:var(--accent);color:var(--accent)}
section{scroll-margin-top:48px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 14px 6px;margin:0;box-shadow:0 1px 2px rgba(0,0,0,.04)}
figcaption{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap}
.note{color:var(--muted);font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0 2px;font-size:12.5px}
.key{display:inline-flex;align-items:center;gap:6px}
.key b{font-weight:600;font-variant-numeric:tabular-nums}
.key.hint{color:var(--muted);font-size:11.5px}
.sw{display:inline-block;width:14px;height:3px;border-radius:2px}
.sw.dash{background-image:linear-gradient(90deg,transparent 50%,var(--card) 50%)!important;background-size:6px 3px;background-color:currentColor}
.sw.band{height:10px;opacity:.22}
.sw.area{height:10px;opacity:.8}
svg{display:block;width:100%;height:auto;overflow:visible}
svg text{font-size:11px;fill:var(--muted);font-variant-numeric:tabular-nums}
svg .label{font-size:11.5px}
svg .grid{stroke:var(--grid);stroke-width:1}
svg .axis{stroke:var(--axis);stroke-width:1}
svg .line{fill:none;stroke-width:1.9;stroke-linejoin:round;stroke-linecap:round}
svg .line.raw{stroke-opacity:.28;stroke-width:1.2}
svg .band{fill-opacity:.1;stroke:none}
svg .area{fill-opacity:.78;stroke:var(--card);stroke-width:.5}
svg .flag{fill:#dc2626}
svg .hv{fill:transparent;pointer-events:all}
svg .hv:hover{fill:var(--hover)}
.empty{background:var(--card);border:1px dashed var(--line);border-radius:12px;padding:28px;margin-top:18px;text-align:center;color:var(--muted)}
.small-note{font-size:12.5px;margin-top:18px}
.warn{background:var(--bad-bg);color:var(--bad);border-radius:8px;padding:6px 10px;margin:8px 0;font-size:12.5px}
details.step{background:var(--card);border:1px solid var(--line);border-radius:12px;margin:10px 0;overflow:hidden}
details.step>summary{cursor:pointer;padding:10px 14px;display:flex;gap:14px;align-items:center;flex-wrap:wrap;list-style:none}
details.step>summary::-webkit-details-marker{display:none}
details.step>summary::before{content:"▸";color:var(--muted)}
details.step[open]>summary::before{content:"▾"}
details.step[open]>summary{border-bottom:1px solid var(--line)}
.step-title{font-weight:650}
.stats{color:var(--muted);font-size:12.5px}
.stats b{color:var(--ink)}
.samples{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:0}
.sample{padding:12px 14px;min-width:0}
.sample+.sample{border-left:1px solid var(--line)}
.sample header{all:unset;display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.which{font-weight:700;text-transform:uppercase;font-size:11px;letter-spacing:.06em;padding:2px 8px;border-radius:4px;background:var(--good-bg);color:var(--good)}
.which.worst{background:var(--bad-bg);color:var(--bad)}
.which.plain{background:var(--chip);color:var(--muted)}
.tie{grid-column:1/-1;margin:10px 14px 0;font-size:12.5px}
.score{font-weight:650;font-size:13px;padding:1px 8px;border-radius:4px}
.score.good{color:var(--good);background:var(--good-bg)}
.score.bad{color:var(--bad);background:var(--bad-bg)}
.chip{background:var(--chip);border-radius:4px;padding:1px 7px;font-size:12px}
.end{border-radius:4px;padding:1px 7px;font-size:12px;background:var(--chip);color:var(--muted)}
.end-answer{background:var(--good-bg);color:var(--good)}
.end-max_turns,.end-response_budget,.end-context_full,.end-truncated,.end-foreign_stop{background:var(--bad-bg);color:var(--bad)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:10px 0;font-size:12.5px}
dt{color:var(--muted)}
dd{margin:0;word-break:break-word;white-space:pre-wrap}
.convo{border:1px solid var(--line);border-radius:8px;max-height:640px;overflow:auto;padding:8px;font-size:13px}
.turn{margin:6px 0;padding:6px 10px;border-radius:6px}
.turn .text{white-space:pre-wrap;word-break:break-word}
.role{display:block;font-size:10.5px;font-weight:700;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin-bottom:2px}
.turn.system{background:var(--chip);font-size:12px}
.turn.system summary{cursor:pointer;color:var(--muted)}
.turn.system pre{white-space:pre-wrap;word-break:break-word;margin:6px 0 0;max-height:300px;overflow:auto}
.turn.user{background:var(--user);border-left:3px solid var(--user-b)}
.turn.assistant{border-left:3px solid var(--line)}
.turn.raw{background:var(--chip)}
.think{color:var(--muted);font-style:italic}
.tag{font-size:10.5px;color:var(--muted);background:var(--chip);border-radius:3px;padding:0 4px;margin:0 2px;font-style:normal}
.tok{font-family:ui-monospace,monospace;font-size:11px;color:var(--bad)}
.box{margin:6px 0;border-radius:6px;padding:6px 10px;font-style:normal}
.box pre{margin:2px 0 0;white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:260px;overflow:auto}
.box .label{font-size:10.5px;font-weight:700;text-transform:uppercase;letter-spacing:.06em}
.box.call{background:var(--call);border-left:3px solid var(--call-b)}
.box.call .label{color:var(--call-b)}
.box.resp{background:var(--resp);border-left:3px solid var(--resp-b)}
.box.resp .label{color:var(--resp-b)}
.echo{font-family:ui-monospace,monospace;font-size:11px;color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.box .label b{text-transform:none;letter-spacing:0;font-family:ui-monospace,monospace}
.turn.tool{padding:0 0}
mark.boxed{background:var(--mark);color:var(--ink);border:1px solid var(--mark-b);border-radius:4px;padding:0 4px;font-weight:650;font-style:normal}
footer{margin-top:30px;color:var(--muted);font-size:12px}
`;
