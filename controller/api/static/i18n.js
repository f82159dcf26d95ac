// The page's words in Simplified Chinese (default) and English. The server sends codes and
// parameters (outcome, alarm code + params, state); the page says them in the chosen language.
// ?lang=en or ?lang=zh switches, and the choice is remembered in localStorage.
"use strict";
(function () {
  const D = {
    zh: {
      "title": "分拣线", "lang.other": "English", "kiosk": "大屏", "station": "人工分拣台", "login": "登录",
      "logout": "退出", "role.viewer": "查看", "role.supervisor": "主管", "role.technician": "技术员",
      "role.none": "未登录", "connecting": "连接中", "no_contact": "无连接",
      "stale": "与控制器失去连接 — 显示的数据可能已过时",
      "test_mode": "测试模式", "plc.up": "PLC 已连接", "plc.down": "PLC 断开",
      "state.booting": "启动中", "state.ready": "就绪", "state.running": "运行", "state.paused": "暂停",
      "state.faulted": "故障", "state.estop": "急停", "state.stopping": "停机中", "state.unknown": "未知",
      "k.throughput": "处理量", "k.throughput.unit": "件/小时", "k.readrate": "读码率", "k.readrate.unit": "有运单号",
      "k.sorted": "已分拣", "k.total": "总数", "k.fire": "动作误差", "of_total": "占总数", "exceptions": "异常",
      "outcomes": "结果", "alarms": "报警", "alarms.none": "无报警", "alarms.shelved": "已搁置",
      "chutes": "格口", "full": "满", "disabled": "停用", "cameras": "相机", "noreads": "未读码图像",
      "recent": "最近包裹", "review": "未读码复核与人工录入", "search": "查询", "audit": "操作记录",
      "control": "控制", "pause": "暂停进件", "resume": "恢复进件", "reset": "急停复位", "reload": "重新加载路由",
      "test.set": "切换测试模式", "test.off": "关闭测试", "test.round_robin": "轮流", "test.fixed": "固定格口",
      "enable": "启用", "disable": "停用", "emptied": "已清空", "ack": "确认", "shelve": "搁置1小时",
      "acked_by": "已确认", "count": "次数", "first": "首次", "last": "最近", "since_emptied": "清空后",
      "severity.critical": "严重", "severity.warning": "警告",
      "confirm.disable": "停用格口 {chute}？发往它的包裹将改去备用格口或异常口。",
      "confirm.pause": "暂停进件？分拣线将停止接收包裹。",
      "confirm.test": "切换测试模式为 {mode}？分流器将按测试模式动作，不按路由分拣。",
      "confirm.reload": "重新加载路由表？", "confirm.reset": "确认急停已解除、线体安全，复位？",
      "key": "录入", "key.placeholder": "扫描或输入运单号", "keyed": "已录入", "no_frames": "无图像",
      "review.none": "没有待录入的包裹", "search.go": "查询", "search.none": "没有找到包裹",
      "f.waybill": "运单号", "f.since": "从", "f.until": "到", "f.carrier": "快递", "f.town": "目的地",
      "f.chute": "格口", "f.outcome": "结果", "f.any": "全部",
      "c.id": "编号", "c.time": "时间", "c.waybill": "运单号", "c.carrier": "快递", "c.town": "目的地",
      "c.chute": "格口", "c.outcome": "结果", "c.reason": "原因", "c.user": "用户", "c.action": "操作",
      "c.target": "对象", "c.result": "结果", "c.camera": "相机", "c.state": "状态", "c.fps": "帧率",
      "cam.last": "最新图像（已读条码画框）", "c.frames": "帧", "c.dropped": "丢帧", "c.reads": "读码", "c.alarm": "报警",
      "none.parcels": "暂无包裹", "none.cameras": "无相机", "none.noreads": "无未读码图像", "none.audit": "暂无操作", "alarms.history": "报警历史", "none.alarm_history": "暂无报警历史", "cleared": "已清除",
      "cam.ok": "正常", "cam.down": "停止", "cam.dropping": "丢帧", "ok": "成功", "refused": "拒绝", "failed": "失败",
      "need_login": "需要登录才能操作", "updated": "更新", "uptime": "运行时间", "belt": "带速", "routes": "路由",
      "in_flight": "在途", "sim": "模拟", "run": "生产",
      "login.name": "用户名", "login.password": "密码", "login.go": "登录", "login.wrong": "用户名或密码错误",
      "login.blocked": "尝试次数过多，请稍后再试",
      "station.scan": "扫描运单号", "station.go": "查询格口", "station.record": "记录已更新",
      "station.norecord": "本线没有该运单的记录", "station.to": "送往",
      "parcel": "包裹档案", "p.reads": "读码", "p.decision": "路由决策", "p.rule": "规则", "p.version": "路由版本",
      "p.why": "原因", "p.chosen": "决定格口", "p.reached": "实际格口", "p.fire": "动作误差", "p.confirm": "到件确认",
      "p.keyed": "人工录入", "p.by": "录入人", "p.missing": "记录中没有", "p.audit": "相关操作", "p.times": "时间",
      "p.induct": "进件", "p.decided": "决策", "p.ended": "结束", "p.length": "长度",
      "p.fired": "分流器动作", "p.confirmed": "到件确认", "p.read_at": "距包裹前端 {mm} mm，进件后 {s} s",
      "missing.read_position": "每次读码在皮带上的位置与时间", "missing.fire_time": "分流器动作的时刻（只记误差）",
      "missing.confirm_time": "到件光电看到包裹的时刻（只记结果）",
      "confirm.confirmed": "已确认到件", "confirm.lost": "丢失", "confirm.unconfirmed": "未确认",
      "outcome.sorted": "已分拣", "outcome.no_read": "无读码", "outcome.multi_read": "多码", "outcome.no_route": "无路由",
      "outcome.chute_unavailable": "格口不可用", "outcome.too_late": "决策超时", "outcome.gap_too_small": "间距过小",
      "outcome.lost": "丢失", "outcome.unconfirmed": "未确认", "outcome.fault": "故障",
      "alarm.camera_down": "相机 {camera} 无图像", "alarm.camera_drops": "相机 {camera} 丢帧",
      "alarm.camera_health": "相机 {camera} 状态异常", "alarm.estop": "急停", "alarm.plc_link": "与 PLC 的连接中断",
      "alarm.plc_refused": "PLC 拒绝请求", "alarm.plc_write": "PLC 写入无应答", "alarm.timing_process": "定时进程重启",
      "alarm.records": "记录数据库无法写入", "alarm.routes": "路由文件被拒绝", "alarm.belt_stopped": "皮带停止",
      "alarm.unexpected_confirms": "格口出现意外包裹", "alarm.manifest_inbox": "预报文件被拒绝",
      "alarm.plc_slow": "PLC 通讯变慢",
      // an alarm's detail: the server sends the key and its parameters (controller/timing/alarms.py)
      "alarmtext.plc_link.lost": "与线体 I/O 的连接中断（{error}）；在途包裹进异常口；正在重连",
      "alarmtext.plc_link.lost_held": "与线体 I/O 的连接中断（{error}）；在途包裹进异常口；正在重连。{outputs} 可能仍在动作，直到模块看门狗将其关断（其后的包裹可能被推入该格口）",
      "alarmtext.plc_link.no_connection": "无法连接线体 I/O（{url}）；每 {every_s} 秒重试",
      "alarmtext.plc_slow.round_trip": "PLC 通讯变慢（一次往返 {ms} ms，超过 {limit_ms} ms）：恢复前不启动任何摆轮，包裹进异常口",
      "alarmtext.plc_refused.request": "设备拒绝了请求：{error}",
      "alarmtext.plc_refused.answer": "PLC 拒绝了分拣应答：{error}",
      "alarmtext.plc_refused.ack": "PLC 拒绝了结果确认：{error}",
      "alarmtext.plc_refused.switch_off": "无法关断 {signal}：{error}",
      "alarmtext.plc_refused.write": "无法写入 {signal}：{error}",
      "alarmtext.plc_refused.output": "{signal}：设备拒绝：{error}",
      "alarmtext.plc_write.no_answer": "{signal} 写入无应答；相关包裹进异常口",
      "alarmtext.estop.pressed": "急停已按下：在途包裹进异常口；松开后请复位",
      "alarmtext.estop.released": "急停已松开：请复位（页面、API 或复位按钮）以重新启动线体",
      "alarmtext.belt_stopped.in_flight": "皮带停止，可能有在途包裹",
      "alarmtext.unexpected_confirms.count": "{n} 个包裹进入了无人分配的格口（{where}）：是否在入口光电之后人工放上皮带？",
      "alarmtext.routes.none_kept": "路由文件被拒绝，且没有可用的上一版：{error}",
      "alarmtext.routes.last_good": "启动时路由文件被拒绝（{error}）；按上一版（版本 {version}，{when}）分拣",
      "alarmtext.routes.refused": "路由文件被拒绝，继续使用上一版：{error}",
      "alarmtext.manifest_inbox.refused": "预报文件 {file} 被拒绝：{error}（详见 {why}）",
      "alarmtext.camera_drops.share": "相机 {camera}：{share} 的帧被丢弃（解码跟不上：CPU 不足或太慢）",
      "alarmtext.camera_down.error": "相机 {camera}：{error}；正在重连",
      "alarmtext.camera_down.died": "相机进程 {camera} 退出（代码 {exit}）；已重启",
      "alarmtext.camera_health.read_rate": "相机 {camera}：最近 {n} 个包裹读码率 {rate}，低于下限 {floor}",
      "alarmtext.camera_health.calibration": "相机 {camera}：标定未使用：{error}",
      "alarmtext.timing_process.died": "定时进程退出（代码 {exit}）；已重启",
      "alarmtext.records.unwritable": "记录数据库无法写入（{error}）；{waiting} 条记录在内存中等待重试",
      "routes.title": "路由表", "routes.version": "版本", "routes.rules": "{n} 条规则", "routes.default": "默认格口",
      "routes.intercept": "拦截格口", "routes.refused": "磁盘上的路由文件被拒绝，线体仍按当前路由表分拣：",
      "routes.none": "没有可用的路由表，线体不分拣：", "route.address": "地址（可选）", "route.go": "查路由",
    },
    en: {
      "title": "Sorting line", "lang.other": "中文", "kiosk": "Wall screen", "station": "Manual-sort station",
      "login": "Log in", "logout": "Log out", "role.viewer": "viewer", "role.supervisor": "supervisor",
      "role.technician": "technician", "role.none": "not logged in", "connecting": "CONNECTING",
      "no_contact": "NO CONTACT", "stale": "Lost contact with the controller — data shown may be old",
      "test_mode": "TEST MODE", "plc.up": "PLC LINK OK", "plc.down": "PLC NO LINK",
      "state.booting": "BOOTING", "state.ready": "READY", "state.running": "RUNNING", "state.paused": "PAUSED",
      "state.faulted": "FAULTED", "state.estop": "E-STOP", "state.stopping": "STOPPING", "state.unknown": "UNKNOWN",
      "k.throughput": "Throughput", "k.throughput.unit": "parcels/h", "k.readrate": "Read rate",
      "k.readrate.unit": "with waybill", "k.sorted": "Sorted", "k.total": "Total", "k.fire": "Fire error",
      "of_total": "of total", "exceptions": "exceptions", "outcomes": "Outcomes", "alarms": "Alarms",
      "alarms.none": "No active alarms", "alarms.shelved": "Shelved", "chutes": "Chutes", "full": "full",
      "disabled": "disabled", "cameras": "Cameras", "noreads": "No-read images", "recent": "Recent parcels",
      "review": "No-read review and keying", "search": "Search", "audit": "Control actions", "control": "Control",
      "pause": "Pause induction", "resume": "Resume induction", "reset": "Reset e-stop", "reload": "Reload routes",
      "test.set": "Switch test mode", "test.off": "Test off", "test.round_robin": "Round robin",
      "test.fixed": "Fixed chute", "enable": "Enable", "disable": "Disable", "emptied": "Emptied", "ack": "Acknowledge",
      "shelve": "Shelve 1 h", "acked_by": "acknowledged", "count": "count", "first": "first", "last": "last",
      "since_emptied": "since emptied", "severity.critical": "critical", "severity.warning": "warning",
      "confirm.disable": "Disable chute {chute}? Its parcels go to the alternate or the reject chute.",
      "confirm.pause": "Pause induction? The line stops taking parcels in.",
      "confirm.test": "Switch the test mode to {mode}? The diverters fire a test pattern, not the routes.",
      "confirm.reload": "Reload the routing table?", "confirm.reset": "The e-stop is released and the line is safe: reset?",
      "key": "Key", "key.placeholder": "scan or type the waybill", "keyed": "keyed", "no_frames": "no images",
      "review.none": "Nothing to key", "search.go": "Search", "search.none": "No parcels found",
      "f.waybill": "Waybill", "f.since": "From", "f.until": "To", "f.carrier": "Carrier", "f.town": "Town",
      "f.chute": "Chute", "f.outcome": "Outcome", "f.any": "any",
      "c.id": "ID", "c.time": "Time", "c.waybill": "Waybill", "c.carrier": "Carrier", "c.town": "Town",
      "c.chute": "Chute", "c.outcome": "Outcome", "c.reason": "Reason", "c.user": "User", "c.action": "Action",
      "c.target": "Target", "c.result": "Result", "c.camera": "Camera", "c.state": "State", "c.fps": "FPS",
      "cam.last": "last image (codes read outlined)", "c.frames": "Frames", "c.dropped": "Dropped", "c.reads": "Reads", "c.alarm": "Alarm",
      "none.parcels": "No parcels yet", "none.cameras": "No cameras", "none.noreads": "No no-read images",
      "none.audit": "No control actions yet", "alarms.history": "Alarm history", "none.alarm_history": "No alarms kept yet", "cleared": "cleared", "cam.ok": "OK", "cam.down": "DOWN", "cam.dropping": "DROPPING",
      "ok": "ok", "refused": "refused", "failed": "failed", "need_login": "Log in to control the line",
      "updated": "updated", "uptime": "up", "belt": "belt", "routes": "routes", "in_flight": "in flight",
      "sim": "SIM", "run": "RUN", "login.name": "Name", "login.password": "Password", "login.go": "Log in",
      "login.wrong": "Wrong name or password", "login.blocked": "Too many tries: wait a moment",
      "station.scan": "Scan the waybill", "station.go": "Find chute", "station.record": "record updated",
      "station.norecord": "no record of this waybill on this line", "station.to": "to",
      "parcel": "Parcel story", "p.reads": "Reads", "p.decision": "Route decision", "p.rule": "Rule",
      "p.version": "Routing version", "p.why": "Why", "p.chosen": "Chute chosen", "p.reached": "Chute reached",
      "p.fire": "Fire error", "p.confirm": "Confirm", "p.keyed": "Keyed by hand", "p.by": "by",
      "p.missing": "Not in the records", "p.audit": "Control actions on it", "p.times": "Times",
      "p.induct": "inducted", "p.decided": "decided", "p.ended": "ended", "p.length": "length",
      "p.fired": "diverter fired", "p.confirmed": "confirmed", "p.read_at": "{mm} mm from its head, {s} s after induct",
      "missing.read_position": "where on the belt and when each read was made",
      "missing.fire_time": "when the diverter fired (only its error)",
      "missing.confirm_time": "when the confirm photo-eye saw it (only the outcome)",
      "confirm.confirmed": "confirmed in the chute", "confirm.lost": "lost", "confirm.unconfirmed": "unconfirmed",
      "outcome.sorted": "sorted", "outcome.no_read": "no read", "outcome.multi_read": "multi read",
      "outcome.no_route": "no route", "outcome.chute_unavailable": "chute unavailable", "outcome.too_late": "too late",
      "outcome.gap_too_small": "gap too small", "outcome.lost": "lost", "outcome.unconfirmed": "unconfirmed",
      "outcome.fault": "fault",
      "alarm.camera_down": "camera {camera} has no picture", "alarm.camera_drops": "camera {camera} drops frames",
      "alarm.camera_health": "camera {camera} health", "alarm.estop": "emergency stop",
      "alarm.plc_link": "PLC link lost", "alarm.plc_refused": "the PLC refused a request",
      "alarm.plc_write": "a PLC write got no answer", "alarm.timing_process": "timing process restarted",
      "alarm.records": "record database cannot be written", "alarm.routes": "routing files refused",
      "alarm.belt_stopped": "belt stopped", "alarm.unexpected_confirms": "unexpected parcels in chutes",
      "alarm.manifest_inbox": "advice file refused",
      "alarm.plc_slow": "PLC link slow",
      "alarmtext.plc_link.lost": "lost the line's I/O ({error}); parcels in flight go to reject; reconnecting",
      "alarmtext.plc_link.lost_held": "lost the line's I/O ({error}); parcels in flight go to reject; reconnecting. {outputs} may still be on until the module's watchdog drops it (a parcel behind may be pushed into that chute)",
      "alarmtext.plc_link.no_connection": "no connection to the line's I/O at {url}; retrying every {every_s} s",
      "alarmtext.plc_slow.round_trip": "the PLC link is slow (a round trip took {ms} ms, over {limit_ms} ms): no diverter is switched on until it is fast again; parcels go to reject",
      "alarmtext.plc_refused.request": "the device refused a request: {error}",
      "alarmtext.plc_refused.answer": "the PLC refused an answer: {error}",
      "alarmtext.plc_refused.ack": "the PLC refused the result acknowledgement: {error}",
      "alarmtext.plc_refused.switch_off": "cannot switch {signal} off: {error}",
      "alarmtext.plc_refused.write": "cannot write {signal}: {error}",
      "alarmtext.plc_refused.output": "{signal}: refused by the device: {error}",
      "alarmtext.plc_write.no_answer": "{signal}: a write got no answer; parcels sent to reject",
      "alarmtext.estop.pressed": "emergency stop pressed: parcels in flight go to reject; reset after it is released",
      "alarmtext.estop.released": "emergency stop released: press reset (page, API or the reset button) to restart the line",
      "alarmtext.belt_stopped.in_flight": "the belt stopped with parcels possibly in flight",
      "alarmtext.unexpected_confirms.count": "{n} parcels arrived in chutes nobody sent them to ({where}): put on the belt by hand after the induct eye?",
      "alarmtext.routes.none_kept": "routing files refused and no last good table kept: {error}",
      "alarmtext.routes.last_good": "routing files refused at start ({error}); sorting on the last good table, version {version} of {when}",
      "alarmtext.routes.refused": "routing files refused, the previous version stays in force: {error}",
      "alarmtext.manifest_inbox.refused": "advice file {file} refused: {error} (details in {why})",
      "alarmtext.camera_drops.share": "camera {camera}: {share} of its frames dropped (decoding cannot keep up: CPU starved or too slow)",
      "alarmtext.camera_down.error": "camera {camera}: {error}; reconnecting",
      "alarmtext.camera_down.died": "camera worker {camera} died (exit {exit}); restarted",
      "alarmtext.camera_health.read_rate": "camera {camera}: read rate {rate} < floor {floor} over the last {n} parcels",
      "alarmtext.camera_health.calibration": "camera {camera}: calibration not used: {error}",
      "alarmtext.timing_process.died": "timing process died (exit {exit}); restarted",
      "alarmtext.records.unwritable": "the record database cannot be written ({error}); {waiting} records wait in memory and are retried",
      "routes.title": "Route table", "routes.version": "version", "routes.rules": "{n} rules", "routes.default": "default chute",
      "routes.intercept": "intercept chute", "routes.refused": "The route file on disk was refused; the line sorts on with the table in force:",
      "routes.none": "No route table in force; the line does not sort:", "route.address": "Address (optional)", "route.go": "Route it",
    },
  };

  function chosen() {
    const q = new URLSearchParams(window.location.search).get("lang");
    if (q === "en" || q === "zh") {
      try { window.localStorage.setItem("sorter-lang", q); } catch (e) { /* private mode */ }
      return q;
    }
    let kept = null;
    try { kept = window.localStorage.getItem("sorter-lang"); } catch (e) { /* private mode */ }
    return kept === "en" ? "en" : "zh";
  }

  const lang = chosen();

  // a word by key, {name} replaced by params (text only: the result goes into textContent)
  function t(key, params) {
    let s = Object.prototype.hasOwnProperty.call(D[lang], key) ? D[lang][key]
      : Object.prototype.hasOwnProperty.call(D.zh, key) ? D.zh[key] : null;
    if (s === null) return null;
    if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] === undefined ? m : String(params[k])));
    return s;
  }

  // every element with data-i18n="key" gets the word; data-i18n-ph sets the placeholder
  function apply(root) {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    for (const e of (root || document).querySelectorAll("[data-i18n]")) {
      const w = t(e.getAttribute("data-i18n"));
      if (w !== null) e.textContent = w;
    }
    for (const e of (root || document).querySelectorAll("[data-i18n-ph]")) {
      const w = t(e.getAttribute("data-i18n-ph"));
      if (w !== null) e.placeholder = w;
    }
  }

  // the same page in the other language
  function otherUrl() {
    const u = new URL(window.location.href);
    u.searchParams.set("lang", lang === "en" ? "zh" : "en");
    return u.pathname + u.search;
  }

  window.SorterI18n = { lang, t, apply, otherUrl, words: D };
})();
